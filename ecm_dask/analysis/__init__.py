"""Analyses of g2 results and of diffraction series: regions, distributions, STEM mode, scattering profiles."""
