"""master.cf command -> Python module."""

from mta.master import registry


def test_proxymap_maps_to_its_package():
    assert registry.module_for_program("proxymap") == "mta.proxymap"


def test_dash_becomes_underscore():
    assert registry.module_for_program("trivial-rewrite") == "mta.trivial_rewrite"


def test_defer_and_trace_are_bounce():
    assert registry.module_for_program("defer") == "mta.bounce"
    assert registry.module_for_program("trace") == "mta.bounce"


def test_proxymap_is_available():
    assert registry.resolve_command("proxymap") == ("mta.proxymap", "")


def test_missing_postfix_program_is_not_available_yet(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_PACKAGE_DIR", str(tmp_path))
    module, why = registry.resolve_command("postscreen")
    assert module is None
    assert why == "command postscreen is not available yet"


def test_program_with_a_main_module_is_available(tmp_path, monkeypatch):
    (tmp_path / "trivial_rewrite").mkdir()
    (tmp_path / "trivial_rewrite" / "__main__.py").write_text("")
    monkeypatch.setattr(registry, "_PACKAGE_DIR", str(tmp_path))
    assert registry.resolve_command("trivial-rewrite") == ("mta.trivial_rewrite", "")


def test_dotted_command_is_a_module_path():
    assert registry.resolve_command("mta.master.multi_server") == ("mta.master.multi_server", "")


def test_dotted_command_that_does_not_exist():
    module, why = registry.resolve_command("nosuch.module_here")
    assert module is None
    assert "no such Python module" in why


def test_unknown_plain_command():
    module, why = registry.resolve_command("frobnicate")
    assert module is None
    assert "not a known program" in why


def test_wakeup_and_qmgr_are_prespawned():
    assert registry.is_prespawned("anything", 60)
    assert registry.is_prespawned("qmgr", 0)
    assert not registry.is_prespawned("smtpd", 0)


def test_bouncein_is_mtas_own_program():
    assert registry.resolve_command("bouncein") == ("mta.bouncein", "")
