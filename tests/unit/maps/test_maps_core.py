"""open_map(): spec parsing, default type, caching, errors; Maps: order and first hit."""

import pytest

from mta.maps import MapError, Maps, open_map, split_spec, table_types
from mta.maps.dict_lmdb import build_lmdb


def test_split_spec_without_type_uses_default_database_type(cfg):
    assert split_spec("/etc/mta/virtual", cfg) == ("lmdb", "/etc/mta/virtual")


def test_split_spec_keeps_colons_of_the_name():
    assert split_spec("proxy:lmdb:/etc/x") == ("proxy", "lmdb:/etc/x")


def test_table_types_lists_every_type():
    assert {"lmdb", "texthash", "inline", "static", "regexp", "pcre", "cidr", "proxy"} <= set(
        table_types()
    )


def test_unknown_type_is_a_map_error_naming_the_table():
    with pytest.raises(MapError, match=r"^nosuch:x: unsupported dictionary type: nosuch$"):
        open_map("nosuch:x")


def test_same_spec_returns_the_same_object():
    assert open_map("inline:{a=b}") is open_map("inline:{a=b}")


def test_fold_flag_gives_a_separate_object():
    assert open_map("inline:{a=b}") is not open_map("inline:{a=b}", fold=False)


def test_maps_first_hit_wins():
    maps = Maps(["inline:{a=first}", "inline:{a=second, b=two}"])
    assert maps.lookup("a") == "first"
    assert maps.lookup("b") == "two"
    assert maps.lookup("c") is None


def test_maps_from_param_reads_the_list(tmp_path):
    from mta.config import load_config

    (tmp_path / "main.cf").write_text("virtual_alias_maps = inline:{x=y}, static:z\n")
    cfg = load_config(str(tmp_path))
    maps = Maps.from_param(cfg, "virtual_alias_maps")
    assert [t.kind for t in maps] == ["inline", "static"]
    assert maps.lookup("x") == "y" and maps.lookup("other") == "z"


def test_fixed_only_skips_pattern_tables():
    maps = Maps(["regexp:{ {/./ pattern} }", "inline:{k=fixed}"])
    assert maps.lookup("k") == "pattern"
    assert maps.lookup("k", fixed_only=True) == "fixed"


def test_default_type_opens_lmdb(cfg, tmp_path):
    build_lmdb(str(tmp_path / "t.lmdb"), [(b"k", b"v")])
    assert open_map(str(tmp_path / "t"), cfg).lookup("K") == "v"
