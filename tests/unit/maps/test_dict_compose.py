"""unionmap:, pipemap:, randmap: and environ: over real component tables."""

import pytest

from mta.maps import MapError, MapRetry, open_map


def test_unionmap_joins_every_answer(tmp_path, cfg):
    (tmp_path / "a").write_text("x@example.com one\n")
    table = open_map(f"unionmap:{{ texthash:{tmp_path / 'a'}, inline:{{x@example.com=two}} }}", cfg)
    assert table.lookup("x@example.com") == "one,two"
    assert table.lookup("nobody@example.com") is None


def test_pipemap_feeds_each_answer_on(cfg):
    table = open_map("pipemap:{ inline:{a=b}, inline:{b=c} }", cfg)
    assert table.lookup("a") == "c"
    assert table.lookup("b") is None  # the first table has no b


def test_randmap_answers_with_one_of_its_values(cfg):
    table = open_map("randmap:{ smtp:[r1.example], {smtp:[r2.example]:25} }", cfg)
    seen = {table.lookup("anything") for _ in range(200)}
    assert seen == {"smtp:[r1.example]", "smtp:[r2.example]:25"}


def test_environ(monkeypatch, cfg):
    monkeypatch.setenv("MTA_TEST_VALUE", "hello")
    table = open_map("environ:table", cfg)
    assert table.lookup("MTA_TEST_VALUE") == "hello"
    assert table.lookup("MTA_TEST_NOT_SET_ANYWHERE") is None


def test_a_failing_component_fails_the_lookup(cfg):
    with pytest.raises(MapRetry):
        open_map("unionmap:{ inline:{a=1}, fail:down }", cfg).lookup("a")
    with pytest.raises(MapError, match="need"):
        open_map("pipemap:texthash:/etc/x", cfg)
    with pytest.raises(MapError, match="unsupported dictionary type"):
        open_map("unionmap:{ nosuch:/etc/x }", cfg)
