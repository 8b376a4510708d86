import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListTwinsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTwinsResponse(_message.Message):
    __slots__ = ("twins",)
    TWINS_FIELD_NUMBER: _ClassVar[int]
    twins: _containers.RepeatedCompositeFieldContainer[TwinSummary]
    def __init__(self, twins: _Optional[_Iterable[_Union[TwinSummary, _Mapping]]] = ...) -> None: ...

class TwinSummary(_message.Message):
    __slots__ = ("id", "title", "capabilities")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTwinRequest(_message.Message):
    __slots__ = ("twin_id",)
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    def __init__(self, twin_id: _Optional[str] = ...) -> None: ...

class Twin(_message.Message):
    __slots__ = ("id", "title", "description", "bbox", "record_start", "record_end", "regions", "gauges", "datasets", "capabilities", "license", "document")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    RECORD_START_FIELD_NUMBER: _ClassVar[int]
    RECORD_END_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    GAUGES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    description: str
    bbox: _containers.RepeatedScalarFieldContainer[float]
    record_start: str
    record_end: str
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    gauges: _containers.RepeatedCompositeFieldContainer[Gauge]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    license: str
    document: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., bbox: _Optional[_Iterable[float]] = ..., record_start: _Optional[str] = ..., record_end: _Optional[str] = ..., regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ..., gauges: _Optional[_Iterable[_Union[Gauge, _Mapping]]] = ..., datasets: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., license: _Optional[str] = ..., document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("id", "name", "area_km2", "outlet_gauge", "geometry")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AREA_KM2_FIELD_NUMBER: _ClassVar[int]
    OUTLET_GAUGE_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    area_km2: float
    outlet_gauge: str
    geometry: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., area_km2: _Optional[float] = ..., outlet_gauge: _Optional[str] = ..., geometry: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Gauge(_message.Message):
    __slots__ = ("id", "name", "lon_deg", "lat_deg", "area_km2")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LON_DEG_FIELD_NUMBER: _ClassVar[int]
    LAT_DEG_FIELD_NUMBER: _ClassVar[int]
    AREA_KM2_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    lon_deg: float
    lat_deg: float
    area_km2: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., lon_deg: _Optional[float] = ..., lat_deg: _Optional[float] = ..., area_km2: _Optional[float] = ...) -> None: ...

class SimulateRequest(_message.Message):
    __slots__ = ("twin_id", "start", "end", "precipitation_factor", "regions", "model_version")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PRECIPITATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    start: str
    end: str
    precipitation_factor: float
    regions: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    def __init__(self, twin_id: _Optional[str] = ..., start: _Optional[str] = ..., end: _Optional[str] = ..., precipitation_factor: _Optional[float] = ..., regions: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("twin_id", "issued", "forcing", "members", "lead_days", "precipitation_factor", "regions", "model_version")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    FORCING_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEAD_DAYS_FIELD_NUMBER: _ClassVar[int]
    PRECIPITATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    issued: str
    forcing: str
    members: int
    lead_days: int
    precipitation_factor: float
    regions: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    def __init__(self, twin_id: _Optional[str] = ..., issued: _Optional[str] = ..., forcing: _Optional[str] = ..., members: _Optional[int] = ..., lead_days: _Optional[int] = ..., precipitation_factor: _Optional[float] = ..., regions: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ...) -> None: ...

class GetWarningsRequest(_message.Message):
    __slots__ = ("twin_id", "issued", "forcing", "members", "lead_days", "precipitation_factor", "regions", "model_version", "bbox")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    FORCING_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEAD_DAYS_FIELD_NUMBER: _ClassVar[int]
    PRECIPITATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    issued: str
    forcing: str
    members: int
    lead_days: int
    precipitation_factor: float
    regions: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    bbox: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, twin_id: _Optional[str] = ..., issued: _Optional[str] = ..., forcing: _Optional[str] = ..., members: _Optional[int] = ..., lead_days: _Optional[int] = ..., precipitation_factor: _Optional[float] = ..., regions: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., bbox: _Optional[_Iterable[float]] = ...) -> None: ...

class SubsetRequest(_message.Message):
    __slots__ = ("twin_id", "dataset", "bbox", "start", "end", "variables")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    dataset: str
    bbox: _containers.RepeatedScalarFieldContainer[float]
    start: str
    end: str
    variables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, twin_id: _Optional[str] = ..., dataset: _Optional[str] = ..., bbox: _Optional[_Iterable[float]] = ..., start: _Optional[str] = ..., end: _Optional[str] = ..., variables: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("twin_id", "start", "end", "lead_days", "return_period", "alert_probability", "model_version")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    LEAD_DAYS_FIELD_NUMBER: _ClassVar[int]
    RETURN_PERIOD_FIELD_NUMBER: _ClassVar[int]
    ALERT_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    start: str
    end: str
    lead_days: int
    return_period: int
    alert_probability: float
    model_version: str
    def __init__(self, twin_id: _Optional[str] = ..., start: _Optional[str] = ..., end: _Optional[str] = ..., lead_days: _Optional[int] = ..., return_period: _Optional[int] = ..., alert_probability: _Optional[float] = ..., model_version: _Optional[str] = ...) -> None: ...

class ResultInfo(_message.Message):
    __slots__ = ("twin_id", "capability", "model_version", "forcing_mode", "inputs")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCING_MODE_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    capability: str
    model_version: int
    forcing_mode: str
    inputs: _struct_pb2.Struct
    def __init__(self, twin_id: _Optional[str] = ..., capability: _Optional[str] = ..., model_version: _Optional[int] = ..., forcing_mode: _Optional[str] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Coordinate(_message.Message):
    __slots__ = ("name", "labels", "values", "times", "dim")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[float]
    times: _containers.RepeatedCompositeFieldContainer[_timestamp_pb2.Timestamp]
    dim: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[float]] = ..., times: _Optional[_Iterable[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]]] = ..., dim: _Optional[str] = ...) -> None: ...

class Variable(_message.Message):
    __slots__ = ("name", "units", "dims", "shape", "values")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    name: str
    units: str
    dims: _containers.RepeatedScalarFieldContainer[str]
    shape: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., units: _Optional[str] = ..., dims: _Optional[_Iterable[str]] = ..., shape: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class CoverageResult(_message.Message):
    __slots__ = ("info", "coordinates", "variables")
    INFO_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    info: ResultInfo
    coordinates: _containers.RepeatedCompositeFieldContainer[Coordinate]
    variables: _containers.RepeatedCompositeFieldContainer[Variable]
    def __init__(self, info: _Optional[_Union[ResultInfo, _Mapping]] = ..., coordinates: _Optional[_Iterable[_Union[Coordinate, _Mapping]]] = ..., variables: _Optional[_Iterable[_Union[Variable, _Mapping]]] = ...) -> None: ...

class Warning(_message.Message):
    __slots__ = ("twin_id", "region_id", "region_name", "flood_level", "flood_probability", "thresholds_m3s", "peak_discharge_m3s", "drought_level", "spi", "issued", "valid_from", "valid_to", "members", "forcing_mode", "threshold_source", "model_version", "notes", "geometry")
    class FloodProbabilityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ThresholdsM3sEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_NAME_FIELD_NUMBER: _ClassVar[int]
    FLOOD_LEVEL_FIELD_NUMBER: _ClassVar[int]
    FLOOD_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_M3S_FIELD_NUMBER: _ClassVar[int]
    PEAK_DISCHARGE_M3S_FIELD_NUMBER: _ClassVar[int]
    DROUGHT_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SPI_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    FORCING_MODE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    region_id: str
    region_name: str
    flood_level: str
    flood_probability: _containers.ScalarMap[str, float]
    thresholds_m3s: _containers.ScalarMap[str, float]
    peak_discharge_m3s: float
    drought_level: str
    spi: float
    issued: str
    valid_from: str
    valid_to: str
    members: int
    forcing_mode: str
    threshold_source: str
    model_version: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    geometry: _struct_pb2.Struct
    def __init__(self, twin_id: _Optional[str] = ..., region_id: _Optional[str] = ..., region_name: _Optional[str] = ..., flood_level: _Optional[str] = ..., flood_probability: _Optional[_Mapping[str, float]] = ..., thresholds_m3s: _Optional[_Mapping[str, float]] = ..., peak_discharge_m3s: _Optional[float] = ..., drought_level: _Optional[str] = ..., spi: _Optional[float] = ..., issued: _Optional[str] = ..., valid_from: _Optional[str] = ..., valid_to: _Optional[str] = ..., members: _Optional[int] = ..., forcing_mode: _Optional[str] = ..., threshold_source: _Optional[str] = ..., model_version: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ..., geometry: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetTwinResponse(_message.Message):
    __slots__ = ("twin",)
    TWIN_FIELD_NUMBER: _ClassVar[int]
    twin: Twin
    def __init__(self, twin: _Optional[_Union[Twin, _Mapping]] = ...) -> None: ...

class SimulateResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: CoverageResult
    def __init__(self, result: _Optional[_Union[CoverageResult, _Mapping]] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: CoverageResult
    def __init__(self, result: _Optional[_Union[CoverageResult, _Mapping]] = ...) -> None: ...

class SubsetResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: CoverageResult
    def __init__(self, result: _Optional[_Union[CoverageResult, _Mapping]] = ...) -> None: ...

class GetWarningsResponse(_message.Message):
    __slots__ = ("info", "warnings")
    INFO_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    info: ResultInfo
    warnings: _containers.RepeatedCompositeFieldContainer[Warning]
    def __init__(self, info: _Optional[_Union[ResultInfo, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[Warning, _Mapping]]] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("info", "record")
    INFO_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    info: ResultInfo
    record: _struct_pb2.Struct
    def __init__(self, info: _Optional[_Union[ResultInfo, _Mapping]] = ..., record: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("twin_id", "capability", "inputs")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    capability: str
    inputs: _struct_pb2.Struct
    def __init__(self, twin_id: _Optional[str] = ..., capability: _Optional[str] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "twin_id", "capability", "status", "progress", "message", "created", "updated", "inputs", "result", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    twin_id: str
    capability: str
    status: str
    progress: float
    message: str
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    inputs: _struct_pb2.Struct
    result: _struct_pb2.Struct
    error: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., twin_id: _Optional[str] = ..., capability: _Optional[str] = ..., status: _Optional[str] = ..., progress: _Optional[float] = ..., message: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., inputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("sequence", "kind", "twin_id", "location_id", "variable", "time", "payload", "recorded")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    kind: str
    twin_id: str
    location_id: str
    variable: str
    time: _timestamp_pb2.Timestamp
    payload: _struct_pb2.Struct
    recorded: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., kind: _Optional[str] = ..., twin_id: _Optional[str] = ..., location_id: _Optional[str] = ..., variable: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., recorded: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StreamStateRequest(_message.Message):
    __slots__ = ("twin_id", "after_sequence", "rate_hz", "kinds", "from_start")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FROM_START_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    after_sequence: int
    rate_hz: float
    kinds: _containers.RepeatedScalarFieldContainer[str]
    from_start: bool
    def __init__(self, twin_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., rate_hz: _Optional[float] = ..., kinds: _Optional[_Iterable[str]] = ..., from_start: _Optional[bool] = ...) -> None: ...

class StreamStateResponse(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: StateFrame
    def __init__(self, frame: _Optional[_Union[StateFrame, _Mapping]] = ...) -> None: ...

class ReplayStateResponse(_message.Message):
    __slots__ = ("frame",)
    FRAME_FIELD_NUMBER: _ClassVar[int]
    frame: StateFrame
    def __init__(self, frame: _Optional[_Union[StateFrame, _Mapping]] = ...) -> None: ...

class StateFrame(_message.Message):
    __slots__ = ("frame", "sent", "last_sequence", "events")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    frame: int
    sent: _timestamp_pb2.Timestamp
    last_sequence: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, frame: _Optional[int] = ..., sent: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_sequence: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("twin_id", "variable", "location_id", "time", "value", "units", "source")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    variable: str
    location_id: str
    time: _timestamp_pb2.Timestamp
    value: float
    units: str
    source: str
    def __init__(self, twin_id: _Optional[str] = ..., variable: _Optional[str] = ..., location_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ..., units: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class IngestObservationsRequest(_message.Message):
    __slots__ = ("observation",)
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    observation: Observation
    def __init__(self, observation: _Optional[_Union[Observation, _Mapping]] = ...) -> None: ...

class RejectedObservation(_message.Message):
    __slots__ = ("index", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    reason: str
    def __init__(self, index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class IngestObservationsResponse(_message.Message):
    __slots__ = ("received", "stored", "duplicates", "rejected", "last_sequence")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    received: int
    stored: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedObservation]
    last_sequence: int
    def __init__(self, received: _Optional[int] = ..., stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedObservation, _Mapping]]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class ReplayStateRequest(_message.Message):
    __slots__ = ("twin_id", "start", "end", "speed", "kinds")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    speed: float
    kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, twin_id: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., speed: _Optional[float] = ..., kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportStateRequest(_message.Message):
    __slots__ = ("twin_id", "start", "end", "format", "kinds", "chunk_bytes")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    format: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    chunk_bytes: int
    def __init__(self, twin_id: _Optional[str] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., format: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., chunk_bytes: _Optional[int] = ...) -> None: ...

class ExportStateResponse(_message.Message):
    __slots__ = ("data", "offset", "last", "media_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    last: bool
    media_type: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., last: _Optional[bool] = ..., media_type: _Optional[str] = ...) -> None: ...
