"""The demo twin: flood and drought early warning for the Fulda river basin (Hesse, DE).

Real data, shipped inside a PyPI wheel so nothing downloads: spotpy (MIT) carries the
daily basin-mean precipitation, temperature and observed discharge of the Fulda
catchment (2976.41 km², 1979-1988) in ``spotpy/examples/cmf_data/fulda_climate.csv``.

No wheel ships a gridded record, so the forcing grid is *derived*, with a seeded and
documented method (``GRID_METHOD``) that keeps the basin mean of every day equal to
the observed value. The sub-basin polygons are schematic outlines of the Fulda's
main tributary basins, drawn by hand and not surveyed; their model areas are scaled
so that they add up to the gauged catchment area. Both facts are stated in the
datasets' attributes, the twin document and the STAC metadata.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import Geod
from scipy.ndimage import gaussian_filter
from shapely.geometry import Polygon, mapping
from shapely.ops import unary_union

from twinmesh.core.demo.common import (
    ESP_LEAD_DAYS,
    RETURN_PERIODS,
    SPI_SCALE_MONTHS,
    TWINMESH,
    Step,
    dataset_info,
    esp_forcing_dataset,
    forcing_dataset,
    grid_spi,
    provenance,
    reanalysis_dataset,
    snow_model,
    spi_dataset,
)
from twinmesh.core.geo import region_mask, region_means
from twinmesh.core.hydrology.calibration import calibrate_gr4j
from twinmesh.core.hydrology.extremes import annual_maxima, return_levels
from twinmesh.core.hydrology.gr4j import mm_per_day_to_m3s
from twinmesh.core.hydrology.pet import pet_oudin
from twinmesh.core.hydrology.snow import run_gr4j_snow, snow_threshold_mm
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Gauge, ModelInfo, Provider, Region, Twin

__all__ = [
    "TWIN_ID",
    "BUILD_VERSION",
    "GRID_METHOD",
    "load_fulda_record",
    "derive_forcing_grid",
    "build_fulda_twin",
]

TWIN_ID = "fulda"
#: Bump when the build changes, so `twinmesh demo init` rebuilds stale data.
BUILD_VERSION = "2"
CATCHMENT_AREA_KM2 = 2976.41
LATITUDE_DEG = 50.85
CALIBRATION_YEARS = (1980, 1985)
VALIDATION_YEARS = (1986, 1988)
DATA_LICENCE = "MIT (data as distributed with spotpy)"
#: The whole catchment above the gauge: the region whose warnings are verified.
OUTLET_REGION = "fulda-basin"

SPOTPY = Provider(
    name="spotpy (Houska et al. 2015)",
    roles=["producer", "licensor"],
    url="https://github.com/thouska/spotpy",
    description="Ships the Fulda basin-mean daily record with its examples (MIT licence).",
)
GRID_METHOD = (
    "Derived 0.05-degree grid (EPSG:4326). precipitation(t,y,x) = P_basin(t) * O(y,x) * "
    "e(t,y,x) / mean_basin(O * e)(t), where P_basin is the observed basin mean, O a static "
    "orographic factor (Gaussian bumps over the Rhoen and the Vogelsberg) and e a spatially "
    "correlated log-normal field (white noise smoothed by a Gaussian filter of 3 cells, "
    "sigma 0.4), drawn with numpy's default_rng(seed). temperature(t,y,x) = T_basin(t) "
    "- 0.0065 K/m * (z(y,x) - mean_basin(z)), z an elevation proxy built from the same "
    "bumps. Both preserve the observed basin mean of every day exactly."
)

# Schematic outlines (lon, lat) of the main sub-basins above the gauge.
REGION_OUTLINES: dict[str, tuple[str, str, list[tuple[float, float]]]] = {
    "upper-fulda": (
        "Upper Fulda",
        "Headwaters in the Rhoen down to the city of Fulda.",
        [(9.62, 50.42), (9.95, 50.42), (10.02, 50.52), (9.85, 50.62), (9.68, 50.60), (9.62, 50.52)],
    ),
    "lueder-schlitz": (
        "Lueder and Schlitz",
        "Western tributaries draining the eastern Vogelsberg.",
        [(9.30, 50.50), (9.62, 50.52), (9.68, 50.60), (9.62, 50.75), (9.35, 50.72), (9.25, 50.62)],
    ),
    "haune": (
        "Haune",
        "Eastern tributary from the Rhoen via Huenfeld to Bad Hersfeld.",
        [
            (9.68, 50.60),
            (9.85, 50.62),
            (10.02, 50.52),
            (10.00, 50.70),
            (9.85, 50.85),
            (9.72, 50.85),
            (9.62, 50.75),
        ],
    ),
    "middle-fulda": (
        "Middle Fulda",
        "Aula and Jossa, Bad Hersfeld to Rotenburg an der Fulda.",
        [
            (9.35, 50.72),
            (9.62, 50.75),
            (9.72, 50.85),
            (9.85, 50.85),
            (9.92, 50.95),
            (9.80, 51.03),
            (9.55, 51.00),
            (9.40, 50.88),
        ],
    ),
    "lower-fulda": (
        "Lower Fulda",
        "Rotenburg an der Fulda down to the gauge near Melsungen/Grebenau.",
        [
            (9.40, 50.88),
            (9.55, 51.00),
            (9.80, 51.03),
            (9.75, 51.15),
            (9.55, 51.25),
            (9.40, 51.22),
            (9.35, 51.05),
        ],
    ),
}
GAUGE = ("grebenau", "Fulda at Grebenau (outlet of the modelled catchment)", 9.47, 51.21)

# Grid: cell centres, north-up.
GRID_X = np.round(np.arange(9.225, 10.08, 0.05), 3)
GRID_Y = np.round(np.arange(51.275, 50.37, -0.05), 3)


def _fulda_csv() -> Path:
    return Path(str(files("spotpy") / "examples" / "cmf_data" / "fulda_climate.csv"))


@dataclass(frozen=True)
class BasinRecord:
    """The observed basin-mean daily record."""

    time: pd.DatetimeIndex
    precipitation_mm: np.ndarray
    temperature_c: np.ndarray
    discharge_m3s: np.ndarray
    source: str


def load_fulda_record() -> BasinRecord:
    """Read the Fulda record from the spotpy wheel."""
    path = _fulda_csv()
    df = pd.read_csv(path, skiprows=[1])
    time = pd.to_datetime(df["date"], format="%d.%m.%Y")
    return BasinRecord(
        time=pd.DatetimeIndex(time),
        precipitation_mm=df["Prec"].to_numpy(dtype="float64"),
        temperature_c=df["tmean"].to_numpy(dtype="float64"),
        discharge_m3s=df["Q"].to_numpy(dtype="float64"),
        source=f"spotpy examples/cmf_data/{path.name}",
    )


def _regions() -> list[Region]:
    geod = Geod(ellps="WGS84")
    polys = {k: Polygon(v[2]) for k, v in REGION_OUTLINES.items()}
    raw = {k: abs(geod.geometry_area_perimeter(p)[0]) / 1e6 for k, p in polys.items()}
    scale = CATCHMENT_AREA_KM2 / sum(raw.values())
    subbasins = [
        Region(
            id=k,
            name=REGION_OUTLINES[k][0],
            description=REGION_OUTLINES[k][1] + " Schematic outline, not surveyed.",
            geometry=mapping(p),
            area_km2=round(raw[k] * scale, 2),
        )
        for k, p in polys.items()
    ]
    outlet = Region(
        id=OUTLET_REGION,
        name="Whole Fulda basin above the Grebenau gauge",
        description="The union of the five sub-basins: the catchment the gauge measures "
        "and the model was calibrated on. Its warnings are verified against the gauge.",
        geometry=mapping(unary_union(list(polys.values()))),
        area_km2=CATCHMENT_AREA_KM2,
        outlet_gauge=GAUGE[0],
    )
    return [*subbasins, outlet]


def _bump(x0: float, y0: float, width: float) -> np.ndarray:
    xx, yy = np.meshgrid(GRID_X, GRID_Y)
    return np.exp(-(((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * width**2)))


def derive_forcing_grid(record: BasinRecord, basin: np.ndarray, seed: int) -> xr.Dataset:
    """The gridded forcing cube (see GRID_METHOD); basin means equal the record."""
    rng = np.random.default_rng(seed)
    rhoen, vogelsberg = _bump(9.95, 50.50, 0.15), _bump(9.22, 50.52, 0.15)
    orography = 1.0 + 0.35 * rhoen + 0.30 * vogelsberg
    elevation_m = 250.0 + 600.0 * rhoen + 450.0 * vogelsberg

    nt = len(record.time)
    noise = rng.standard_normal((nt, GRID_Y.size, GRID_X.size))
    noise = gaussian_filter(noise, sigma=(0, 3, 3))
    noise /= noise.std(axis=(1, 2), keepdims=True)
    sigma = 0.4
    field = orography[None] * np.exp(sigma * noise - sigma**2 / 2)
    basin_mean = field[:, basin].mean(axis=1)
    precip = record.precipitation_mm[:, None, None] * field / basin_mean[:, None, None]
    temp = (
        record.temperature_c[:, None, None]
        - 0.0065 * (elevation_m - elevation_m[basin].mean())[None]
    )

    return forcing_dataset(record.time, GRID_X, GRID_Y, precip, temp)


def _basin_mask(regions: list[Region]) -> np.ndarray:
    mask = np.zeros((GRID_Y.size, GRID_X.size), dtype=bool)
    for r in regions:
        mask |= region_mask(r, GRID_X, GRID_Y)
    return mask


def _provenance(ds: xr.Dataset, **kwargs: Any) -> xr.Dataset:
    return provenance(ds, twin_id=TWIN_ID, licence=DATA_LICENCE, **kwargs)


def build_id(seed: int, repetitions: int) -> str:
    """Fingerprint of everything the build depends on; equal ids mean nothing to redo."""
    text = f"{BUILD_VERSION}|{seed}|{repetitions}|{_fulda_csv().stat().st_size}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_fulda_twin(
    store: DatacubeStore,
    *,
    seed: int,
    repetitions: int,
    progress: Step | None = None,
) -> Twin:
    """Build the twin's datacubes, calibrate its model and write its document.

    ``progress(step, done, total)`` reports long work (the CLI draws bars with it).
    """
    report = progress or (lambda step, done, total: None)
    record = load_fulda_record()
    regions = _regions()
    basin = _basin_mask(regions)
    t = record.time

    report("derive forcing grid", 0, 1)
    forcing = derive_forcing_grid(record, basin, seed)
    forcing = _provenance(
        forcing,
        title="Fulda basin daily forcing, derived 0.05-degree grid",
        source=record.source,
        history=GRID_METHOD,
        generated=True,
        seed=seed,
    )
    store.write(TWIN_ID, "forcing", forcing)
    report("derive forcing grid", 1, 1)

    observed = xr.Dataset(
        {
            "discharge_m3s": (
                ("t", "gauge"),
                record.discharge_m3s[:, None].astype("float32"),
                {"standard_name": "water_volume_transport_in_river_channel", "units": "m3 s-1"},
            )
        },
        coords={
            "t": ("t", t.values, {"standard_name": "time", "axis": "T"}),
            "gauge": ("gauge", [GAUGE[0]]),
            "lon": ("gauge", [GAUGE[2]], {"units": "degrees_east"}),
            "lat": ("gauge", [GAUGE[3]], {"units": "degrees_north"}),
        },
    )
    observed = _provenance(
        observed,
        title="Fulda observed daily discharge at the catchment outlet",
        source=record.source,
        history="copied unchanged from the source record",
        generated=False,
    )
    store.write(TWIN_ID, "discharge-observed", observed)

    # Calibrate GR4J with its snow routine on the basin mean (equal to the record by
    # construction).
    pet = pet_oudin(record.temperature_c, t.day_of_year.to_numpy(), LATITUDE_DEG)
    q_obs_mm = record.discharge_m3s * 86.4 / CATCHMENT_AREA_KM2
    years = t.year.to_numpy()
    cal = np.flatnonzero((years >= CALIBRATION_YEARS[0]) & (years <= CALIBRATION_YEARS[1]))
    val = np.flatnonzero((years >= VALIDATION_YEARS[0]) & (years <= VALIDATION_YEARS[1]))
    result = calibrate_gr4j(
        record.precipitation_mm,
        pet,
        q_obs_mm,
        warmup_days=int(cal[0]),
        calibration=slice(int(cal[0]), int(cal[-1]) + 1),
        validation=slice(int(val[0]), int(val[-1]) + 1),
        repetitions=repetitions,
        seed=seed,
        progress=lambda done, total: report("calibrate GR4J-CemaNeige (SCE-UA)", done, total),
        temperature_c=record.temperature_c,
        years=years,
    )
    report("calibrate GR4J-CemaNeige (SCE-UA)", repetitions, repetitions)

    # Reanalysis: the calibrated model on every region's own forcing; each region's
    # snow threshold from its own solid precipitation in the calibration years.
    report("simulate sub-basins", 0, 1)
    precip_r = region_means(forcing["precipitation"], regions)
    temp_r = region_means(forcing["temperature"], regions)
    region_params = {}
    sims = []
    for k, r in enumerate(regions):
        pet_r = pet_oudin(temp_r[k], t.day_of_year.to_numpy(), LATITUDE_DEG)
        g_threshold = snow_threshold_mm(precip_r[k][cal], temp_r[k][cal], years[cal])
        params, snow, _ = snow_model(result)
        q_mm, _ = run_gr4j_snow(precip_r[k], temp_r[k], pet_r, params, snow, g_threshold)
        sims.append(mm_per_day_to_m3s(q_mm, r.area_km2))
        region_params[r.id] = {**_model_parameters(result), "g_threshold_mm": g_threshold}
    sim = np.stack(sims, axis=1)
    # Return levels of the model's own climate, fitted outside the validation years.
    climate = (t.year >= CALIBRATION_YEARS[0]) & (t.year <= CALIBRATION_YEARS[1])
    levels = np.array(
        [
            [
                return_levels(annual_maxima(sim[climate, k], t.values[climate]), RETURN_PERIODS)[p]
                for p in RETURN_PERIODS
            ]
            for k in range(len(regions))
        ]
    )
    reanalysis = reanalysis_dataset(t, sim, levels, regions)
    reanalysis = _provenance(
        reanalysis,
        title="Fulda sub-basin discharge simulated by the calibrated GR4J model",
        source="twinmesh GR4J run on the derived forcing grid",
        history=(
            "GR4J (Perrin et al. 2003) with the CemaNeige snow routine (Valery et al. 2014), "
            "basin-calibrated parameters, driven by each region's area-mean forcing and "
            "Oudin PET; return levels from a Gumbel fit to the annual maxima "
            f"{CALIBRATION_YEARS[0]}-{CALIBRATION_YEARS[1]} (outside the validation years)"
        ),
        generated=True,
    )
    store.write(TWIN_ID, "discharge-reanalysis", reanalysis)
    report("simulate sub-basins", 1, 1)

    report("ESP ensemble forcing", 0, 1)
    esp = esp_forcing_dataset(
        t,
        regions,
        precip_r,
        temp_r,
        twin_id=TWIN_ID,
        twin_name="Fulda",
        licence=DATA_LICENCE,
    )
    store.write(TWIN_ID, "forcing-ensemble", esp)
    report("ESP ensemble forcing", 1, 1)

    report("drought index SPI-3", 0, 1)
    monthly = forcing["precipitation"].resample(t="MS").sum().values
    spi = grid_spi(monthly, int(t.year.min()))
    months = pd.date_range(t[0], t[-1], freq="MS")
    spi_ds = spi_dataset(spi, months, forcing["x"], forcing["y"])
    spi_ds = _provenance(
        spi_ds,
        title=f"Fulda SPI-{SPI_SCALE_MONTHS} on the derived grid",
        source="twinmesh, from the forcing cube with climate-indices (gamma fit)",
        history="monthly sums of the derived precipitation grid, SPI per cell, gamma "
        "distribution fitted on the whole 10-year record (WMO recommends 30 years: "
        "treat values beyond +-2 with caution)",
        generated=True,
    )
    store.write(TWIN_ID, "spi-3", spi_ds)
    report("drought index SPI-3", 1, 1)

    twin = _twin_document(record, regions, result, region_params, seed, repetitions)
    store.write_twin(twin)
    return twin


def _model_parameters(result) -> dict[str, float]:  # noqa: ANN001
    """The calibrated GR4J and CemaNeige parameters, rounded for the document."""
    gr4j, snow, _ = snow_model(result)
    params = {**vars(gr4j), **vars(snow)}
    return {k: round(float(v), 6) for k, v in params.items()}


def _twin_document(record, regions, result, region_params, seed: int, repetitions: int) -> Twin:  # noqa: ANN001
    data_licence = "MIT"
    providers = [SPOTPY, TWINMESH]
    start, end = record.time[0].date(), record.time[-1].date()
    return Twin(
        id=TWIN_ID,
        title="Fulda river basin: flood and drought early warning",
        description=(
            "Digital twin of the Fulda catchment above its outlet gauge (2976 km², Hesse, "
            "Germany): derived daily forcing grid, observed discharge, a GR4J rainfall-runoff "
            "model with the CemaNeige snow routine calibrated with SCE-UA, ESP ensemble "
            "forecasts, flood warnings per sub-basin and for the whole basin from the model "
            "climate's 2/5/20-year return levels (GloFAS-style, 30% member threshold), "
            "verified against the outlet gauge, and drought levels from SPI-3."
        ),
        bbox=(9.20, 50.35, 10.10, 51.30),
        time_extent=(start, end),
        regions=regions,
        gauges=[
            Gauge(
                id=GAUGE[0],
                name=GAUGE[1],
                lon=GAUGE[2],
                lat=GAUGE[3],
                area_km2=CATCHMENT_AREA_KM2,
                source=record.source,
            )
        ],
        datasets=[
            dataset_info(
                "forcing",
                description="Daily precipitation and mean temperature on a 0.05-degree grid, "
                "1979-1988, derived from the observed basin means.",
                provenance=GRID_METHOD,
                licence=data_licence,
                providers=providers,
            ),
            dataset_info(
                "discharge-observed",
                title="Observed daily discharge at the outlet gauge",
                description="Daily discharge of the Fulda at the catchment outlet, 1979-1988.",
                provenance=f"Observed; copied unchanged from {record.source}.",
                licence=data_licence,
                providers=[SPOTPY],
            ),
            dataset_info(
                "discharge-reanalysis",
                description="GR4J simulation of every sub-basin, 1979-1988, with 2/5/20-year "
                "return levels (Gumbel).",
                provenance="Generated by the twin's calibrated GR4J model.",
                licence=data_licence,
                providers=providers,
            ),
            dataset_info(
                "spi-3",
                description="Monthly SPI-3 of the derived precipitation grid (gamma fit).",
                provenance="Generated with climate-indices from the forcing grid.",
                licence=data_licence,
                providers=providers,
            ),
            dataset_info(
                "forcing-ensemble",
                description="ESP ensemble forcing of every issue day from 1980 on: for each "
                f"region and up to {ESP_LEAD_DAYS} days ahead, the same calendar window in "
                "each other year of the record (never the verified year).",
                provenance="Generated from the region means of the forcing cube.",
                licence=data_licence,
                providers=providers,
            ),
        ],
        models=[
            ModelInfo(
                id="gr4j",
                kind="GR4J-CemaNeige",
                description="Lumped GR4J rainfall-runoff model (Perrin et al. 2003) behind the "
                "CemaNeige snow routine (Valery et al. 2014, one elevation band), Oudin PET, "
                "calibrated with SCE-UA (spotpy) maximising KGE.",
                parameters={
                    **_model_parameters(result),
                    "g_threshold_mm": round(snow_model(result)[2], 6),
                },
                region_parameters=region_params,
                skill={
                    "calibration": {
                        "period": f"{CALIBRATION_YEARS[0]}-01-01/{CALIBRATION_YEARS[1]}-12-31",
                        "kge": round(result.calibration_kge, 4),
                        "nse": round(result.calibration_nse, 4),
                    },
                    "validation": {
                        "period": f"{VALIDATION_YEARS[0]}-01-01/{VALIDATION_YEARS[1]}-12-31",
                        "kge": round(result.validation_kge, 4),
                        "nse": round(result.validation_nse, 4),
                    },
                    "repetitions": repetitions,
                    "seed": seed,
                },
                trained_on=["forcing", "discharge-observed"],
                created=f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
            )
        ],
        capabilities=["simulate", "forecast", "warnings", "subset", "verify"],
        license=data_licence,
        providers=providers,
        keywords=["flood", "drought", "early warning", "hydrology", "Fulda", "digital twin"],
        properties={
            "latitude_deg": LATITUDE_DEG,
            "catchment_area_km2": CATCHMENT_AREA_KM2,
            "return_periods": list(RETURN_PERIODS),
            "climate_period": [f"{CALIBRATION_YEARS[0]}-01-01", f"{CALIBRATION_YEARS[1]}-12-31"],
            "verification_period": [
                f"{VALIDATION_YEARS[0]}-01-01",
                f"{VALIDATION_YEARS[1]}-12-31",
            ],
            "spi_scale_months": SPI_SCALE_MONTHS,
            "build_id": build_id(seed, repetitions),
            "grid_method": GRID_METHOD,
            "regions_note": "Sub-basin outlines are schematic, drawn by hand, not surveyed.",
        },
    )
