"""Partner institutions of the demo federation and the export of each partner's data to
a directory of its own, read only by that partner's SuperNode.

A partner is a set of gauged regions of a twin (the Delaware's regions by state; the
Fulda, with a ten-year record, as a partner of its own). The export holds the regions'
area-mean forcing and the observed runoff at their outlet gauges, as one ``data.npz``
(numpy only: the SuperNode's ClientApp reads it without twinmesh) plus ``partner.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twinmesh.core.capabilities.hydrology import region_forcing
from twinmesh.core.engine import Engine
from twinmesh.core.errors import InvalidParameter

__all__ = [
    "Partner",
    "DEMO_PARTNERS",
    "HELD_OUT_FRACTION",
    "export_partner",
    "export_demo_partners",
    "load_partner",
]

#: The last half of every partner's record is held out: validation skill and the
#: benchmark's comparison are measured on it, training never sees it.
HELD_OUT_FRACTION = 0.5
#: mm/day of runoff per m3/s over one km2.
_MM_DAY_PER_M3S_KM2 = 86.4


@dataclass(frozen=True)
class Partner:
    """An institution that joins the federation with the gauged regions it holds."""

    name: str
    twin: str
    regions: tuple[str, ...]
    description: str


#: The demo's institutions, of different sizes (samples = regions x days).
DEMO_PARTNERS: dict[str, Partner] = {
    p.name: p
    for p in (
        Partner("fulda", "fulda", ("fulda-basin",), "Hesse: the Fulda at Grebenau, 10 years"),
        Partner(
            "delaware-pa",
            "delaware",
            ("lackawaxen", "brodhead", "lehigh", "schuylkill", "brandywine"),
            "Pennsylvania/Delaware gauges of the Delaware basin, 2 years",
        ),
        Partner(
            "delaware-ny",
            "delaware",
            ("east-branch", "neversink"),
            "New York gauges of the Delaware basin, 2 years",
        ),
        Partner(
            "delaware-nj",
            "delaware",
            ("musconetcong",),
            "New Jersey: the Musconetcong, 2 years (the smallest partner)",
        ),
    )
}


def export_partner(engine: Engine, partner: Partner, out_dir: Path) -> Path:
    """Write the partner's forcing and observed runoff to ``out_dir`` (created);
    returns the directory."""
    twin = engine.twin(partner.twin)
    forcing = region_forcing(engine.store, twin)
    index = {r.id: k for k, r in enumerate(twin.regions)}
    unknown = [r for r in partner.regions if r not in index]
    if unknown:
        raise InvalidParameter(
            f"partner {partner.name!r}: twin {twin.id!r} has no region {', '.join(unknown)}; "
            f"it has: {', '.join(index)}"
        )
    obs = engine.store.open(twin.id, twin.dataset_for("discharge-observed").id)
    gauges = set(map(str, obs["gauge"].values))
    runoff = []
    for rid in partner.regions:
        region = twin.regions[index[rid]]
        if not region.outlet_gauge or region.outlet_gauge not in gauges:
            raise InvalidParameter(
                f"partner {partner.name!r}: region {rid!r} has no observed outlet gauge"
            )
        series = obs["discharge_m3s"].sel(gauge=region.outlet_gauge).to_series()
        series.index = pd.DatetimeIndex(series.index)
        q = series.reindex(forcing.time).to_numpy(dtype="float64")
        runoff.append(q * _MM_DAY_PER_M3S_KM2 / region.area_km2)
    rows = [index[r] for r in partner.regions]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "data.tmp.npz"
    np.savez(
        tmp,
        days=forcing.time.to_numpy().astype("datetime64[D]").astype("int64"),
        precipitation_mm=forcing.precipitation_mm[rows],
        pet_mm=forcing.pet_mm[rows],
        temperature_c=forcing.temperature_c[rows],
        runoff_mm=np.stack(runoff),
    )
    tmp.replace(out_dir / "data.npz")
    meta = {
        "partner": partner.name,
        "twin": twin.id,
        "regions": list(partner.regions),
        "description": partner.description,
        "start": str(forcing.time[0].date()),
        "end": str(forcing.time[-1].date()),
        "held_out_fraction": HELD_OUT_FRACTION,
        "generated": "exported by twinmesh federation export from the twin's datasets",
    }
    (out_dir / "partner.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out_dir


def export_demo_partners(
    engine: Engine, out_dir: Path, names: list[str] | None = None
) -> dict[str, Path]:
    """Export the named demo partners (default: all) to ``out_dir/<name>``."""
    chosen = names or list(DEMO_PARTNERS)
    missing = [n for n in chosen if n not in DEMO_PARTNERS]
    if missing:
        raise InvalidParameter(
            f"unknown demo partner {', '.join(missing)}; the demo has: {', '.join(DEMO_PARTNERS)}"
        )
    return {n: export_partner(engine, DEMO_PARTNERS[n], out_dir / n) for n in chosen}


def load_partner(data_dir: Path) -> dict[str, np.ndarray]:
    """A partner's exported arrays (what its ClientApp reads)."""
    with np.load(data_dir / "data.npz") as data:
        return {k: data[k] for k in data.files}
