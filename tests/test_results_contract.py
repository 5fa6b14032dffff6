"""The result store contract (DESIGN §4, ``schema.validate_results``): a fresh run validates, root maps hold values
only where the status is ok, the raw fit stays in /fit, regions and distributions agree with direct computations,
and the validator names each kind of breach."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from ecm_dask import schema as S
from ecm_dask.errors import ValidationError
from ecm_dask.kernels import kww as KW
from ecm_dask.pipeline.results import pixel_status


@pytest.fixture(scope="module")
def tree(blocked_reference):
    return xr.open_datatree(blocked_reference, engine="zarr").load()


def test_a_fresh_run_validates_with_units_everywhere(tree):
    S.validate_results(tree)
    assert set(tree.groups) >= {f"/{g}" for g in S.RESULT_REQUIRED_GROUPS} | {"/drift"}
    for group in ("/", "/fit", "/regions", "/artefacts", "/g2"):
        ds = tree[group].to_dataset()
        for dim in (S.Y, S.X):
            assert ds[dim].attrs[S.ATTR_UNITS] == "nm", (group, dim)
    root = tree.to_dataset()
    assert root[S.TAU].attrs[S.ATTR_UNITS] == "s" and root[S.TAU_ERR].attrs[S.ATTR_UNITS] == "s"
    assert root.attrs[S.ATTR_RUN_CONFIG]["surface_nm"] == 1.0 and root.attrs[S.ATTR_RUN_FINGERPRINT]
    assert root[S.STATUS].attrs[S.ATTR_FLAG_VALUES] == list(S.RESULT_STATUS)
    # the sample temperature travels from the series to the results (compare and export read it there)
    series = xr.open_zarr(root.attrs[S.ATTR_RUN_CONFIG]["series"])
    assert series.attrs[S.ATTR_TEMPERATURE] is not None
    assert root.attrs[S.ATTR_TEMPERATURE] == series.attrs[S.ATTR_TEMPERATURE]


def test_root_maps_hold_values_only_where_the_status_is_ok_and_fit_keeps_the_raw_values(tree):
    root, fit = tree.to_dataset(), tree["fit"].to_dataset()
    ok = root[S.STATUS].values == S.STATUS_OK
    assert 0 < ok.sum() < ok.size
    for name in S.ROOT_VALUE_MAPS:
        v = root[name].values
        assert np.all(np.isnan(v[~ok])), name
        np.testing.assert_array_equal(v[ok], fit[name].values[ok].astype(np.float32), err_msg=name)
    # rejected pixels keep their raw fit in /fit (e.g. vacuum pixels the fit called ok)
    raw_ok = fit[S.STATUS].values == KW.FIT_OK
    assert np.any(raw_ok & ~ok) and np.all(np.isfinite(fit[S.TAU].values[raw_ok & ~ok]))
    # the region map decides vacuum and crystal, the g2 status decides bad input
    region = tree["regions"].to_dataset()[S.REGION].values
    status = root[S.STATUS].values
    g2_status = tree["g2"].to_dataset()[S.STATUS].values
    assert np.all(status[(region == S.REGION_VACUUM) & (g2_status == 0)] == S.STATUS_VACUUM)
    assert np.all(status[g2_status != 0] == S.STATUS_BAD_INPUT)


def test_distributions_agree_with_direct_medians_of_the_root_maps(tree):
    root = tree.to_dataset()
    region = tree["regions"].to_dataset()[S.REGION].values
    dist = tree["distributions"].to_dataset()
    ok = root[S.STATUS].values == S.STATUS_OK
    med = {}
    for name in ("bulk", "surface"):
        code = {v: k for k, v in S.REGION_NAMES.items()}[name]
        tau = root[S.TAU].values[ok & (region == code)].astype(np.float64)
        med[name] = np.median(np.log10(tau))
        assert int(dist["n"].sel(region=name)) == tau.size
        np.testing.assert_allclose(float(dist["tau_median"].sel(region=name, estimate="value")),
                                   10 ** med[name], rtol=1e-5)
        lo, hi = (float(dist["tau_median"].sel(region=name, estimate=e)) for e in ("ci_low", "ci_high"))
        assert lo <= 10 ** med[name] <= hi
    ratio = dist["surface_bulk_value"].sel(quantity="tau_ratio")
    np.testing.assert_allclose(float(ratio), 10 ** (med["surface"] - med["bulk"]), rtol=1e-5)


def test_fit_status_codes_are_the_result_status_codes():
    for code, meaning in KW.FIT_STATUS.items():
        assert S.RESULT_STATUS[code] == meaning
    assert len(set(S.RESULT_STATUS)) == len(S.RESULT_STATUS)


def test_pixel_status_precedence():
    fit = np.array([0, 0, 0, 0, 0, 3])
    g2 = np.array([0, 0, 0, 0, 2, 0])
    artefact = np.array([0, 1, 2, 1, 2, 0])
    region = np.array([1, 2, 1, S.REGION_VACUUM, 1, S.REGION_CRYSTAL])
    got = pixel_status(fit, g2, artefact, region, drift_edge_code=1, static_code=2)
    np.testing.assert_array_equal(got, [S.STATUS_OK, S.STATUS_DRIFT_EDGE, S.STATUS_STATIC, S.STATUS_VACUUM,
                                        S.STATUS_BAD_INPUT, S.STATUS_STATIC])


def _broken(tree, group, edit):
    """A copy of ``tree`` with ``edit`` applied to the dataset of the root (``"/"``)."""
    assert group == "/"
    groups = {f"/{k}": tree[k].to_dataset(inherit=False) for k in tree.children}
    return xr.DataTree.from_dict({"/": edit(tree.to_dataset(inherit=False)), **groups})


def test_the_validator_names_each_breach(tree):
    root = tree.to_dataset()
    bad_pixel = np.argwhere(root[S.STATUS].values != S.STATUS_OK)[0]

    def value_at_rejected(ds):
        ds = ds.copy(deep=True)
        ds[S.TAU].values[tuple(bad_pixel)] = 12.0
        return ds

    with pytest.raises(ValidationError, match=r"'tau' holds values at 1 pixel\(s\) whose status is not ok"):
        S.validate_results(_broken(tree, "/", value_at_rejected))

    def no_units(ds):
        ds = ds.copy(deep=True)
        ds[S.X].attrs.pop(S.ATTR_UNITS)
        return ds

    with pytest.raises(ValidationError, match=r"/: coordinate 'x' has units None, expected 'nm'"):
        S.validate_results(_broken(tree, "/", no_units))

    def unknown_code(ds):
        ds = ds.copy(deep=True)
        ds[S.STATUS].values[tuple(bad_pixel)] = 77
        return ds

    with pytest.raises(ValidationError, match=r"unknown code\(s\) \[77\]"):
        S.validate_results(_broken(tree, "/", unknown_code))
    t = tree.copy(deep=True)
    del t["regions"]
    with pytest.raises(ValidationError, match="no group /regions"):
        S.validate_results(t)


def test_large_maps_are_thinned_to_a_regular_sub_grid_for_the_intervals(tree, monkeypatch):
    from ecm_dask.pipeline import results as R

    root, regions = tree.to_dataset(), tree["regions"].to_dataset()
    n_ok = int((root[S.STATUS].values == S.STATUS_OK).sum())
    monkeypatch.setattr(R, "MAX_STAT_PIXELS", n_ok // 4 + 1)  # stride ceil(sqrt(< 4)) = 2
    dist = R.distributions(root, regions, n_boot=200)
    assert dist.attrs["grid_stride"] == 2
    sub = root[S.STATUS].values[::2, ::2] == S.STATUS_OK
    region = regions[S.REGION].values[::2, ::2]
    assert int(dist["n"].sel(region="bulk")) == int((sub & (region == S.REGION_BULK)).sum())


def test_checkpoint_groups_are_copied_exactly_and_the_checkpoints_stay_untouched(blocked_reference, tmp_path):
    """assemble_results links the checkpoints' chunk files into /fit, /regions, /artefacts, /drift and /g2: the groups
    equal the checkpoints (values and attributes, units added), and the checkpoints' own metadata is not changed."""
    from ecm_dask.pipeline.results import assemble_results
    from ecm_dask.pipeline.run import stage_dir

    work = stage_dir(blocked_reference)
    before = {p: p.read_bytes() for p in work.rglob("zarr.json")}
    out = assemble_results(tmp_path / "again.zarr", work / "maps.zarr", work / "g2.zarr", work / "drift.zarr",
                           screen=work / "screen.zarr")
    tree = xr.open_datatree(out, engine="zarr")
    sources = {"fit": (work / "maps.zarr", None), "g2": (work / "g2.zarr", None), "drift": (work / "drift.zarr", None),
               "regions": (work / "screen.zarr", "regions"), "artefacts": (work / "screen.zarr", "artefacts")}
    for name, (store, group) in sources.items():
        ckpt = xr.open_zarr(store, group=group)
        got = tree[name].to_dataset()
        for v in ckpt.variables:
            np.testing.assert_array_equal(got[v].values, ckpt[v].values, err_msg=f"{name}/{v}")
            want = dict(ckpt[v].attrs)
            if v in S.UNITS:
                want[S.ATTR_UNITS] = S.UNITS[v]
            assert dict(got[v].attrs) == want, (name, v)
        chunk = next(p for p in (out / name).rglob("*") if p.is_file() and "/c/" in str(p))
        twin = (store / (group or "") / chunk.relative_to(out / name))
        assert chunk.read_bytes() == twin.read_bytes()
    assert {p: p.read_bytes() for p in work.rglob("zarr.json")} == before
    S.validate_results(tree)
