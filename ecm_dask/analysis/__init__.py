"""Scientific analysis of the result maps: regions, distributions, temperature series, correlation lengths.

Labelled in, labelled out (xarray); the numerics are small NumPy/SciPy functions in the same modules.

* :mod:`.regions` - wire segmentation, crystal, surface distance, :func:`classify`;
* :mod:`.distributions` - per-region statistics of τ and β with bootstrap intervals, :func:`compare_regions`;
* :mod:`.temperature` - :func:`combine` runs on a ``temperature`` dim, Arrhenius and VFT fits;
* :mod:`.lengths` - spatial correlation length of a map, four-point intensity correlation g4;
* :mod:`.stem` - diffraction (STEM) mode: g2 per detector pixel averaged over rings of constant q -> τ(q), β(q);
* :mod:`.scattering` - azimuthal I(q) profiles with error bars, comparisons, Ornstein-Zernike and Guinier fits.
"""

from .distributions import compare_regions, region_statistics
from .lengths import intensity_g4, map_correlation_length
from .regions import classify, crystal_mask, segment_wire, surface_distance
from .scattering import compare_profiles, fit_guinier, fit_ornstein_zernike, radial_profile
from .stem import diffraction_g2, fit_rings, stem_scan_g2
from .temperature import combine, fit_arrhenius, fit_vft, tau_vs_temperature

__all__ = ["classify", "combine", "compare_profiles", "compare_regions", "crystal_mask", "diffraction_g2",
           "fit_arrhenius", "fit_guinier", "fit_ornstein_zernike", "fit_rings", "fit_vft", "intensity_g4",
           "map_correlation_length", "radial_profile", "region_statistics", "segment_wire", "stem_scan_g2",
           "surface_distance", "tau_vs_temperature"]
