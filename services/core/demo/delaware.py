"""The second demo twin: flood and drought early warning for the Delaware River Basin (US).

Real data, shipped inside a PyPI wheel so nothing downloads: pywatershed (CC0, USGS)
carries the National Hydrologic Model's Delaware River Basin domain: 765 hydrologic
response units (HRUs) with centroids and areas, the stream network, daily
precipitation and minimum/maximum temperature per HRU for 1979-1980, and observed
daily discharge at 168 USGS gauges (``pywatershed/data/drb_2yr``).

Regions are the real drainage basins of seven USGS gauges on separate tributaries,
found by walking the NHM stream network upstream from each gauge's segment; each
has its own GR4J parameters calibrated on its own gauge. The region outlines are the
union of the Voronoi cells of the region's HRU centroids (the HRU polygons do not ship),
their areas the NHM HRU areas.

Two years are too short for return periods and SPI, so the record is stochastically
extended for those two statistics only (``EXTENSION_METHOD``): the published cubes
hold the real 1979-1980 record.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import xarray as xr
from scipy.spatial import cKDTree
from shapely.geometry import MultiPoint, mapping

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
from twinmesh.core.errors import DataNotReady
from twinmesh.core.geo import region_means
from twinmesh.core.hydrology.calibration import calibrate_gr4j
from twinmesh.core.hydrology.extremes import annual_maxima, return_levels
from twinmesh.core.hydrology.gr4j import GR4JParams, mm_per_day_to_m3s
from twinmesh.core.hydrology.pet import pet_oudin
from twinmesh.core.hydrology.snow import CemaNeigeParams, run_gr4j_snow
from twinmesh.core.store import DatacubeStore
from twinmesh.core.twin import Gauge, ModelInfo, Provider, Region, Twin

__all__ = [
    "TWIN_ID",
    "BUILD_VERSION",
    "REGION_GAUGES",
    "GRID_METHOD",
    "EXTENSION_METHOD",
    "load_drb",
    "build_id",
    "build_delaware_twin",
]

TWIN_ID = "delaware"
BUILD_VERSION = "2"
LICENCE = "CC0-1.0"
GRID_STEP = 0.05
SYNTHETIC_YEARS = 40

#: USGS gauge id -> (region id, region name): outlets of separate tributary basins.
#: The West Branch (Cannonsville reservoir) was left out: regulated flow that a
#: rainfall-runoff model cannot follow (validation NSE -0.36).
REGION_GAUGES: dict[str, tuple[str, str]] = {
    "01421000": ("east-branch", "East Branch Delaware River (Fishs Eddy, NY)"),
    "01431500": ("lackawaxen", "Lackawaxen River (Hawley, PA)"),
    "01437500": ("neversink", "Neversink River (Godeffroy, NY)"),
    "01442500": ("brodhead", "Brodhead Creek (Minisink Hills, PA)"),
    "01457000": ("musconetcong", "Musconetcong River (Bloomsbury, NJ)"),
    "01453000": ("lehigh", "Lehigh River (Bethlehem, PA)"),
    "01474500": ("schuylkill", "Schuylkill River (Philadelphia, PA)"),
    "01481500": ("brandywine", "Brandywine Creek (Wilmington, DE)"),
}

USGS = Provider(
    name="U.S. Geological Survey, National Hydrologic Model (via pywatershed)",
    roles=["producer", "licensor"],
    url="https://github.com/EC-USGS/pywatershed",
    description="NHM Delaware River Basin domain and USGS gauge records shipped with "
    "pywatershed (CC0 1.0).",
)

GRID_METHOD = (
    "Derived 0.05-degree grid (EPSG:4326): inverse-distance-squared interpolation of the "
    "8 nearest NHM HRU centroids' daily precipitation and mean temperature ((tmin+tmax)/2, "
    "converted from inches and degrees Fahrenheit); cells outside the basin outline (the "
    "union of the HRUs' Voronoi cells) are NaN. No randomness."
)
EXTENSION_METHOD = (
    f"Return levels and the SPI climatology use a {SYNTHETIC_YEARS}-year stochastic "
    "extension of the 1979-1980 record: each synthetic month copies the same calendar "
    "month from 1979 or 1980 (chosen at random) with its precipitation scaled by a "
    "log-normal factor (mean 1, sigma 0.35), numpy default_rng(seed); the same choice "
    "applies to every region and cell. The published cubes hold only the real record."
)


def _data_dir() -> Path:
    """The data folder inside the pywatershed wheel, found without importing the package
    (its import pulls in plotting and JIT-compiles models)."""
    spec = importlib.util.find_spec("pywatershed")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotReady(
            "the Delaware demo twin needs the pywatershed package (its data ships there): "
            "pip install 'twinmesh[demo]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "drb_2yr"


@dataclass(frozen=True)
class DrbDomain:
    """The NHM domain as shipped: HRUs, network, forcing and gauges."""

    time: pd.DatetimeIndex
    hru_lon: np.ndarray
    hru_lat: np.ndarray
    hru_area_km2: np.ndarray
    hru_segment: np.ndarray  # 1-based, 0 = none
    tosegment: np.ndarray  # 1-based, 0 = outlet
    precipitation_mm: np.ndarray  # (t, hru)
    temperature_c: np.ndarray  # (t, hru)
    gauges: xr.Dataset  # discharge_m3s (t, gauge) and gauge metadata
    gauge_segment: dict[str, int]


def load_drb() -> DrbDomain:
    """Read the Delaware River Basin domain from the pywatershed wheel (SI units)."""
    d = _data_dir()
    with xr.open_dataset(d / "parameters_dis_both.nc") as params:
        params = params.load()
    with xr.open_dataset(d / "parameters_PRMSChannel.nc") as channel:
        hru_segment = channel["hru_segment"].values.astype(int)
    with (
        xr.open_dataset(d / "prcp.nc") as p,
        xr.open_dataset(d / "tmax.nc") as tx,
        xr.open_dataset(d / "tmin.nc") as tn,
    ):
        precip = p["prcp"].values.astype("float64") * 25.4
        tmean_f = (tx["tmax"].values + tn["tmin"].values) / 2.0
        time = pd.DatetimeIndex(p["time"].values)
    with xr.open_dataset(d / "drb_2yr_gage_poi_obs.nc") as obs:
        obs = obs.load()
    gauges = xr.Dataset(
        {
            "discharge_m3s": (
                ("t", "gauge"),
                (obs["discharge"].transpose("time", "poi_id").values * 0.0283168466).astype(
                    "float32"
                ),
                {"standard_name": "water_volume_transport_in_river_channel", "units": "m3 s-1"},
            )
        },
        coords={
            "t": ("t", obs["time"].values, {"standard_name": "time", "axis": "T"}),
            "gauge": ("gauge", [str(g) for g in obs["poi_id"].values]),
            "gauge_name": ("gauge", [str(n).strip() for n in obs["poi_name"].values]),
            "lon": ("gauge", obs["longitude"].values.astype("float64"), {"units": "degrees_east"}),
            "lat": ("gauge", obs["latitude"].values.astype("float64"), {"units": "degrees_north"}),
            "drainage_area_km2": (
                "gauge",
                obs["drainage_area"].values.astype("float64") * 2.58998811,
                {"units": "km2"},
            ),
        },
    )
    return DrbDomain(
        time=time,
        hru_lon=params["hru_lon"].values.astype("float64"),
        hru_lat=params["hru_lat"].values.astype("float64"),
        hru_area_km2=params["hru_area"].values.astype("float64") * 0.00404685642,
        hru_segment=hru_segment,
        tosegment=params["tosegment"].values.astype(int),
        precipitation_mm=precip,
        temperature_c=(tmean_f - 32.0) * 5.0 / 9.0,
        gauges=gauges,
        gauge_segment={
            str(g): int(s)
            for g, s in zip(
                params["poi_gage_id"].values, params["poi_gage_segment"].values, strict=True
            )
        },
    )


def upstream_hrus(domain: DrbDomain, segment: int) -> np.ndarray:
    """Boolean mask of the HRUs draining to ``segment`` (1-based) through the network."""
    children: dict[int, list[int]] = {}
    for seg, to in enumerate(domain.tosegment, start=1):
        children.setdefault(int(to), []).append(seg)
    found, stack = set(), [segment]
    while stack:
        seg = stack.pop()
        found.add(seg)
        stack.extend(children.get(seg, []))
    return np.isin(domain.hru_segment, list(found))


def _voronoi_cells(domain: DrbDomain) -> tuple[list[shapely.Geometry], shapely.Geometry]:
    points = MultiPoint(list(zip(domain.hru_lon, domain.hru_lat, strict=True)))
    outline = shapely.concave_hull(points, ratio=0.15).buffer(0.06)
    cells = shapely.voronoi_polygons(points, extend_to=outline.envelope, ordered=True)
    return [shapely.intersection(c, outline) for c in cells.geoms], outline


def _regions(domain: DrbDomain) -> tuple[list[Region], list[np.ndarray], shapely.Geometry]:
    cells, outline = _voronoi_cells(domain)
    regions, masks = [], []
    for gauge, (rid, name) in REGION_GAUGES.items():
        mask = upstream_hrus(domain, domain.gauge_segment[gauge])
        shape = shapely.union_all([cells[i] for i in np.flatnonzero(mask)]).simplify(0.005)
        regions.append(
            Region(
                id=rid,
                name=name,
                description=(
                    f"Drainage basin of USGS gauge {gauge} ({int(mask.sum())} NHM HRUs). "
                    "Outline from the HRU centroids' Voronoi cells, area from NHM HRU areas."
                ),
                geometry=mapping(shape),
                area_km2=round(float(domain.hru_area_km2[mask].sum()), 2),
                outlet_gauge=gauge,
            )
        )
        masks.append(mask)
    return regions, masks, outline


def _grid(
    domain: DrbDomain, outline: shapely.Geometry
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, s, e, n = outline.bounds
    x = np.round(np.arange(np.floor(w / GRID_STEP) * GRID_STEP + GRID_STEP / 2, e, GRID_STEP), 3)
    y = np.round(np.arange(np.ceil(n / GRID_STEP) * GRID_STEP - GRID_STEP / 2, s, -GRID_STEP), 3)
    xx, yy = np.meshgrid(x, y)
    inside = shapely.contains_xy(outline, xx, yy)
    return x, y, inside


def _interpolate(domain: DrbDomain, x: np.ndarray, y: np.ndarray, inside: np.ndarray):
    """IDW (power 2, 8 neighbours) of HRU values onto the grid cells inside the basin."""
    lat0 = np.deg2rad(domain.hru_lat.mean())
    tree = cKDTree(np.c_[domain.hru_lon * np.cos(lat0), domain.hru_lat])
    xx, yy = np.meshgrid(x, y)
    targets = np.c_[xx[inside] * np.cos(lat0), yy[inside]]
    dist, idx = tree.query(targets, k=8)
    weights = 1.0 / np.maximum(dist, 1e-6) ** 2
    weights /= weights.sum(axis=1, keepdims=True)

    def grid(values: np.ndarray) -> np.ndarray:
        out = np.full((values.shape[0], y.size, x.size), np.nan)
        out[:, inside] = np.einsum("tnk,nk->tn", values[:, idx], weights)
        return out

    return grid(domain.precipitation_mm), grid(domain.temperature_c)


def _synthetic_months(time: pd.DatetimeIndex, seed: int) -> list[tuple[int, int, float]]:
    """(source year, month, precipitation factor) for every synthetic month."""
    rng = np.random.default_rng(seed)
    years = sorted(set(time.year))
    sigma = 0.35
    return [
        (int(rng.choice(years)), month, float(np.exp(sigma * rng.standard_normal() - sigma**2 / 2)))
        for _ in range(SYNTHETIC_YEARS)
        for month in range(1, 13)
    ]


def _extended_daily(series: np.ndarray, time: pd.DatetimeIndex, plan, scale: bool) -> np.ndarray:
    """A synthetic daily series built from the plan (Feb 29 dropped: 365-day years)."""
    blocks = []
    for year, month, factor in plan:
        sel = (time.year == year) & (time.month == month) & ~((time.month == 2) & (time.day == 29))
        blocks.append(series[sel] * (factor if scale else 1.0))
    return np.concatenate(blocks)


def build_id(seed: int, repetitions: int) -> str:
    """Fingerprint of everything the build depends on; equal ids mean nothing to redo."""
    sizes = "|".join(str(p.stat().st_size) for p in sorted(_data_dir().glob("*.nc")))
    text = f"{BUILD_VERSION}|{seed}|{repetitions}|{sizes}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _provenance(ds: xr.Dataset, **kwargs: Any) -> xr.Dataset:
    return provenance(ds, twin_id=TWIN_ID, licence=LICENCE, **kwargs)


def _offset_progress(report: Step, offset: int, total: int, done: int, _of: int) -> None:
    """One bar over every region's calibration: region k's runs start at ``offset``."""
    report("calibrate GR4J per region", offset + done, total)


def build_delaware_twin(
    store: DatacubeStore,
    *,
    seed: int,
    repetitions: int,
    progress: Step | None = None,
) -> Twin:
    """Build the Delaware twin's datacubes, calibrate one GR4J per region, write its document."""
    report = progress or (lambda step, done, total: None)
    domain = load_drb()
    t = domain.time
    regions, _, outline = _regions(domain)

    report("derive forcing grid", 0, 1)
    x, y, inside = _grid(domain, outline)
    precip_grid, temp_grid = _interpolate(domain, x, y, inside)
    forcing = _provenance(
        forcing_dataset(t, x, y, precip_grid, temp_grid),
        title="Delaware River Basin daily forcing, derived 0.05-degree grid",
        source="pywatershed data/drb_2yr (NHM CBH forcing per HRU)",
        history=GRID_METHOD,
        generated=True,
    )
    store.write(TWIN_ID, "forcing", forcing)
    observed = _provenance(
        domain.gauges.copy(),
        title="USGS observed daily discharge at the NHM points of interest, 1979-1980",
        source="pywatershed data/drb_2yr/drb_2yr_gage_poi_obs.nc",
        history="converted from ft3 s-1 and mi2 to SI units, otherwise unchanged",
        generated=False,
    )
    store.write(TWIN_ID, "discharge-observed", observed)
    report("derive forcing grid", 1, 1)

    # Region forcing from the grid, as the capabilities will read it.
    precip_r = region_means(forcing["precipitation"], regions)
    temp_r = region_means(forcing["temperature"], regions)
    lat = float(domain.hru_lat.mean())
    doy = t.day_of_year.to_numpy()
    pet_r = np.stack([pet_oudin(temp_r[k], doy, lat) for k in range(len(regions))])

    # One GR4J-CemaNeige per region, calibrated on 1979 after a spin-up on a copy of
    # 1979, validated on 1980.
    n79 = int((t.year == 1979).sum())
    years = t.year.to_numpy()
    results = {}
    total = repetitions * len(regions)
    for k, (gauge, (rid, _)) in enumerate(REGION_GAUGES.items()):
        q_obs = domain.gauges["discharge_m3s"].sel(gauge=gauge).values.astype("float64")
        q_obs_mm = q_obs * 86.4 / regions[k].area_km2
        p = np.concatenate([precip_r[k, :n79], precip_r[k]])
        e = np.concatenate([pet_r[k, :n79], pet_r[k]])
        tc = np.concatenate([temp_r[k, :n79], temp_r[k]])
        q = np.concatenate([np.full(n79, np.nan), q_obs_mm])
        results[rid] = calibrate_gr4j(
            p,
            e,
            q,
            warmup_days=n79,
            calibration=slice(n79, 2 * n79),
            validation=slice(2 * n79, p.size),
            repetitions=repetitions,
            seed=seed + k,
            progress=partial(_offset_progress, report, k * repetitions, total),
            temperature_c=tc,
            years=np.concatenate([years[:n79], years]),
        )
    report("calibrate GR4J per region", total, total)

    report("simulate and extend", 0, 1)
    plan = _synthetic_months(t, seed)
    sims, levels = [], []
    for k, r in enumerate(regions):
        model = snow_model(results[r.id])
        q_mm, _ = run_gr4j_snow(precip_r[k], temp_r[k], pet_r[k], *model)
        sims.append(mm_per_day_to_m3s(q_mm, r.area_km2))
        p_ext = _extended_daily(precip_r[k], t, plan, scale=True)
        e_ext = _extended_daily(pet_r[k], t, plan, scale=False)
        t_ext = _extended_daily(temp_r[k], t, plan, scale=False)
        warm = slice(0, n79)
        q_ext, _ = run_gr4j_snow(
            np.concatenate([precip_r[k, warm], p_ext]),
            np.concatenate([temp_r[k, warm], t_ext]),
            np.concatenate([pet_r[k, warm], e_ext]),
            *model,
        )
        q_ext = mm_per_day_to_m3s(q_ext[n79:], r.area_km2)
        days = pd.date_range("2001-01-01", periods=q_ext.size, freq="D")
        days = days[~((days.month == 2) & (days.day == 29))][: q_ext.size]
        maxima = annual_maxima(q_ext[: days.size], days.values)
        rl = return_levels(maxima, RETURN_PERIODS)
        levels.append([rl[p] for p in RETURN_PERIODS])
    reanalysis = _provenance(
        reanalysis_dataset(t, np.stack(sims, axis=1), np.array(levels), regions),
        title="Delaware sub-basin discharge simulated by the per-region GR4J models",
        source="twinmesh GR4J runs on the derived forcing grid",
        history="GR4J (Perrin et al. 2003), parameters calibrated per region on its USGS "
        "gauge, Oudin PET; return levels from a Gumbel fit to annual maxima of the "
        f"stochastically extended record. {EXTENSION_METHOD}",
        generated=True,
        seed=seed,
    )
    store.write(TWIN_ID, "discharge-reanalysis", reanalysis)
    report("simulate and extend", 1, 1)

    esp = esp_forcing_dataset(
        t,
        regions,
        precip_r,
        temp_r,
        twin_id=TWIN_ID,
        twin_name="Delaware",
        licence=LICENCE,
        note="; the 1979-1980 record gives each issue day one member",
    )
    store.write(TWIN_ID, "forcing-ensemble", esp)

    report("drought index SPI-3", 0, 1)
    monthly = forcing["precipitation"].resample(t="MS").sum(skipna=False).values
    months = pd.date_range(t[0], t[-1], freq="MS")
    index = {(m.year, m.month): i for i, m in enumerate(months)}
    synthetic = np.stack([monthly[index[(yr, mo)]] * f for yr, mo, f in plan])
    series = np.concatenate([synthetic, monthly])
    spi = grid_spi(series, int(t.year.min()) - SYNTHETIC_YEARS)[-len(months) :]
    spi_ds = _provenance(
        spi_dataset(spi, months, forcing["x"], forcing["y"]),
        title=f"Delaware River Basin SPI-{SPI_SCALE_MONTHS} on the derived grid",
        source="twinmesh, from the forcing cube with climate-indices (gamma fit)",
        history="gamma distribution fitted per cell on the stochastically extended monthly "
        f"record, SPI of the real months 1979-1980. {EXTENSION_METHOD}",
        generated=True,
        seed=seed,
    )
    store.write(TWIN_ID, "spi-3", spi_ds)
    report("drought index SPI-3", 1, 1)

    twin = _twin_document(domain, regions, results, outline, seed, repetitions)
    store.write_twin(twin)
    return twin


def _skill(results: dict) -> dict:  # noqa: ANN001
    def period(name: str, what: str) -> dict:
        kge = [getattr(r, f"{name}_kge") for r in results.values()]
        nse = [getattr(r, f"{name}_nse") for r in results.values()]
        return {
            "period": what,
            "kge": round(float(np.median(kge)), 4),
            "nse": round(float(np.median(nse)), 4),
            "aggregate": "median over regions",
        }

    return {
        "calibration": period("calibration", "1979-01-01/1979-12-31"),
        "validation": period("validation", "1980-01-01/1980-12-31"),
        "regions": {
            rid: {
                "calibration": {
                    "kge": round(r.calibration_kge, 4),
                    "nse": round(r.calibration_nse, 4),
                },
                "validation": {
                    "kge": round(r.validation_kge, 4),
                    "nse": round(r.validation_nse, 4),
                },
            }
            for rid, r in results.items()
        },
    }


def _twin_document(domain, regions, results, outline, seed: int, repetitions: int) -> Twin:  # noqa: ANN001
    providers = [USGS, TWINMESH]
    g = domain.gauges
    w, s, e, n = outline.bounds
    params = {
        rid: {
            k: round(float(v), 6)
            for k, v in {
                **vars(snow_model(r)[0]),
                **vars(snow_model(r)[1]),
                "g_threshold_mm": snow_model(r)[2],
            }.items()
        }
        for rid, r in results.items()
    }
    names = [*vars(GR4JParams(1, 0, 1, 1)), *vars(CemaNeigeParams(0.5, 1.0)), "g_threshold_mm"]
    median = {k: float(np.median([p[k] for p in params.values()])) for k in names}
    return Twin(
        id=TWIN_ID,
        title="Delaware River Basin: flood and drought early warning",
        description=(
            "Digital twin of eight tributary basins of the Delaware River (NY, PA, NJ, DE) "
            "from the USGS National Hydrologic Model domain: derived daily forcing grid, "
            "observed discharge at 168 USGS gauges, one GR4J model with the CemaNeige snow "
            "routine per basin calibrated on "
            "its own gauge, ensemble forecasts, GloFAS-style flood warnings and SPI-3 "
            "drought levels. The record is 1979-1980; return levels and the SPI climatology "
            "use a documented stochastic extension."
        ),
        bbox=(round(w, 3), round(s, 3), round(e, 3), round(n, 3)),
        time_extent=(domain.time[0].date(), domain.time[-1].date()),
        regions=regions,
        gauges=[
            Gauge(
                id=str(gid),
                name=str(g["gauge_name"].values[i]),
                lon=float(g["lon"].values[i]),
                lat=float(g["lat"].values[i]),
                area_km2=round(float(g["drainage_area_km2"].values[i]), 2),
                source="USGS via pywatershed data/drb_2yr",
            )
            for i, gid in enumerate(g["gauge"].values)
        ],
        datasets=[
            dataset_info(
                "forcing",
                description="Daily precipitation and mean temperature on a 0.05-degree grid, "
                "1979-1980, interpolated from the NHM HRU forcing.",
                provenance=GRID_METHOD,
                licence=LICENCE,
                providers=providers,
            ),
            dataset_info(
                "discharge-observed",
                title="Observed daily discharge at 168 USGS gauges",
                description="USGS daily discharge at the NHM points of interest, 1979-1980.",
                provenance="Observed (USGS); unit conversion only.",
                licence=LICENCE,
                providers=[USGS],
            ),
            dataset_info(
                "discharge-reanalysis",
                description="GR4J simulation of every region, 1979-1980, with 2/5/20-year "
                "return levels from the stochastically extended record.",
                provenance="Generated by the twin's calibrated GR4J models. " + EXTENSION_METHOD,
                licence=LICENCE,
                providers=providers,
            ),
            dataset_info(
                "spi-3",
                description="Monthly SPI-3 of the derived precipitation grid (gamma fit).",
                provenance="Generated with climate-indices from the forcing grid. "
                + EXTENSION_METHOD,
                licence=LICENCE,
                providers=providers,
            ),
            dataset_info(
                "forcing-ensemble",
                description="ESP ensemble forcing of every issue day of 1980, up to "
                f"{ESP_LEAD_DAYS} days ahead: the same calendar window of the other year of "
                "the record, so one member per issue day.",
                provenance="Generated from the region means of the forcing cube.",
                licence=LICENCE,
                providers=providers,
            ),
        ],
        models=[
            ModelInfo(
                id="gr4j",
                kind="GR4J-CemaNeige",
                description="GR4J rainfall-runoff models (Perrin et al. 2003) behind the "
                "CemaNeige snow routine (Valery et al. 2014), one per region, "
                "Oudin PET, calibrated with SCE-UA (spotpy) maximising KGE on 1979 after a "
                "spin-up on a copy of 1979, validated on 1980.",
                parameters={k: round(v, 6) for k, v in median.items()},
                region_parameters=params,
                skill={**_skill(results), "repetitions": repetitions, "seed": seed},
                trained_on=["forcing", "discharge-observed"],
                created=f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}",
            )
        ],
        capabilities=["simulate", "forecast", "warnings", "subset", "verify"],
        license=LICENCE,
        providers=providers,
        keywords=[
            "flood",
            "drought",
            "early warning",
            "hydrology",
            "Delaware",
            "USGS",
            "digital twin",
        ],
        properties={
            "latitude_deg": round(float(domain.hru_lat.mean()), 4),
            "return_periods": list(RETURN_PERIODS),
            # No climate period: two years cannot hold 3 annual maxima outside the
            # verified year, so thresholds come from the stochastic extension.
            "verification_period": ["1980-01-01", "1980-12-31"],
            "climate_note": "cannot be verified on a 2-year record: 1979 is the model's "
            "spin-up year and 1980 the only year forecasts can be issued in, so no year "
            "outside the verified one is left to fit the gauge's observed flood levels on "
            "(a Gumbel fit needs 3 annual maxima), and the ESP ensemble has one member "
            "(the other year); the warning thresholds come from a stochastic extension of "
            "the same two years",
            "spi_scale_months": SPI_SCALE_MONTHS,
            "build_id": build_id(seed, repetitions),
            "grid_method": GRID_METHOD,
            "extension_method": EXTENSION_METHOD,
            "regions_note": "Region outlines approximate the gauges' drainage basins from "
            "the NHM HRU centroids (Voronoi cells); areas are the NHM HRU areas.",
        },
    )
