"""Potential evapotranspiration from temperature alone (Oudin et al., 2005).

Why: GR4J needs daily potential evapotranspiration, and the twin's forcing (observations and
forecasts) reliably carries only air temperature. Oudin et al. (2005, J. Hydrol. 303:290-306)
showed that this temperature-and-radiation formula is as good an input for lumped rainfall-runoff
models such as GR4J as Penman-type formulas.

What: PET = Re / (lambda * rho) * (T + 5) / 100 when T + 5 > 0, else 0, with Re the
extraterrestrial radiation (FAO-56, Allen et al. 1998, eq. 21-25), lambda = 2.45 MJ/kg the latent
heat of vaporisation and rho = 1000 kg/m3 the density of water; the result is in mm/day.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SOLAR_CONSTANT_MJ_M2_MIN", "extraterrestrial_radiation_mj_m2_day", "pet_oudin"]

#: Solar constant Gsc of FAO-56 (MJ m-2 min-1).
SOLAR_CONSTANT_MJ_M2_MIN = 0.0820
# Latent heat of vaporisation (MJ/kg) and density of water (kg/m3).
_LAMBDA_MJ_KG = 2.45
_RHO_WATER_KG_M3 = 1000.0


def _check_inputs(day_of_year: np.ndarray, latitude_deg: float) -> np.ndarray:
    doy = np.asarray(day_of_year, dtype=np.float64)
    if not -90.0 <= latitude_deg <= 90.0:
        raise ValueError(f"latitude_deg must lie in [-90, 90], got {latitude_deg}")
    if np.any(~np.isfinite(doy)) or np.any((doy < 1) | (doy > 366)):
        raise ValueError("day_of_year must lie in 1..366")
    return doy


def extraterrestrial_radiation_mj_m2_day(
    day_of_year: np.ndarray, latitude_deg: float
) -> np.ndarray:
    """Daily extraterrestrial radiation Ra (MJ m-2 day-1), FAO-56 eq. 21.

    Uses the inverse relative Earth-Sun distance (eq. 23), the solar declination (eq. 24) and the
    sunset hour angle (eq. 25, clipped so polar day and night give 24 h and 0 h of sun).
    """
    doy = _check_inputs(day_of_year, latitude_deg)
    phi = np.deg2rad(latitude_deg)
    dr = 1.0 + 0.033 * np.cos(2.0 * np.pi * doy / 365.0)
    delta = 0.409 * np.sin(2.0 * np.pi * doy / 365.0 - 1.39)
    omega_s = np.arccos(np.clip(-np.tan(phi) * np.tan(delta), -1.0, 1.0))
    ra = (
        24.0
        * 60.0
        / np.pi
        * SOLAR_CONSTANT_MJ_M2_MIN
        * dr
        * (omega_s * np.sin(phi) * np.sin(delta) + np.cos(phi) * np.cos(delta) * np.sin(omega_s))
    )
    return np.maximum(ra, 0.0)


def pet_oudin(temp_c: np.ndarray, day_of_year: np.ndarray, latitude_deg: float) -> np.ndarray:
    """Oudin (2005) potential evapotranspiration in mm/day.

    ``temp_c`` is the daily mean air temperature (deg C) and ``day_of_year`` the matching day of
    the year (1..366); they broadcast against each other. NaN temperatures give NaN.
    """
    temp = np.asarray(temp_c, dtype=np.float64)
    ra = extraterrestrial_radiation_mj_m2_day(day_of_year, latitude_deg)
    # MJ m-2 day-1 / (MJ kg-1 * kg m-3) = m/day; * 1000 gives mm/day.
    pet_mm = ra / (_LAMBDA_MJ_KG * _RHO_WATER_KG_M3) * 1000.0 * (temp + 5.0) / 100.0
    return np.where(temp + 5.0 > 0.0, pet_mm, np.where(np.isnan(temp), np.nan, 0.0))
