"""unix:passwd.byname and unix:group.byname: entries in passwd(5)/group(5) form, folding, errors."""

import grp
import os
import pwd

import pytest

from mta.maps import MapError, Maps, open_map, table_types
from mta.maps.dict_unix import UnixDict


def me() -> pwd.struct_passwd:
    return pwd.getpwuid(os.getuid())


def test_type_is_registered():
    assert "unix" in table_types()
    assert isinstance(open_map("unix:passwd.byname"), UnixDict)


def test_passwd_entry_has_the_seven_fields():
    pw = me()
    value = open_map("unix:passwd.byname").lookup(pw.pw_name)
    assert value.split(":") == [
        pw.pw_name,
        pw.pw_passwd,
        str(pw.pw_uid),
        str(pw.pw_gid),
        pw.pw_gecos,
        pw.pw_dir,
        pw.pw_shell,
    ]


def test_root_is_found():
    assert open_map("unix:passwd.byname").lookup("root").startswith("root:")


def test_unknown_user_is_not_found():
    assert open_map("unix:passwd.byname").lookup("no-such-user-q7x") is None


def test_empty_and_nul_keys_find_nothing():
    table = open_map("unix:passwd.byname")
    assert table.lookup("") is None and table.lookup("ro\0ot") is None


def test_keys_are_folded_by_default():
    assert open_map("unix:passwd.byname").lookup("ROOT").startswith("root:")


def test_without_folding_case_matters():
    assert open_map("unix:passwd.byname", fold=False).lookup("ROOT") is None


def test_group_entry_lists_members():
    gr = grp.getgrgid(0)
    value = open_map("unix:group.byname").lookup(gr.gr_name)
    assert value == f"{gr.gr_name}:{gr.gr_passwd}:0:{','.join(gr.gr_mem)}"


def test_unknown_table_name_is_an_error():
    with pytest.raises(MapError, match="unix:shadow.byname: unknown table: shadow.byname"):
        open_map("unix:shadow.byname")


def test_table_cannot_be_listed():
    with pytest.raises(MapError, match="sequential access"):
        list(open_map("unix:passwd.byname").items())


def test_local_part_search_through_maps():
    maps = Maps(["inline:{ alias=x }", "unix:passwd.byname"])
    assert maps.lookup("root").startswith("root:")
    assert maps.lookup("alias") == "x"


def test_default_local_recipient_maps_through_proxymap(tmp_path):
    """proxy:unix:passwd.byname (the local_recipient_maps default) answers via proxymap."""
    import asyncio
    import threading
    from types import SimpleNamespace

    from mta.config import load_config
    from mta.proxymap.server import handle_client

    # alias_maps (lmdb:/etc/aliases by default) is left out: only the proxy part is tested
    (tmp_path / "main.cf").write_text(f"queue_directory = {tmp_path}\nalias_maps =\n")
    (tmp_path / "private").mkdir()
    cfg = load_config(str(tmp_path))
    path = str(tmp_path / "private" / "proxymap")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    ctx = SimpleNamespace(cfg=cfg)

    servers = []

    async def serve():
        servers.append(
            await asyncio.start_unix_server(lambda r, w: handle_client(r, w, ctx), path=path)
        )
        ready.set()

    async def shutdown():
        servers[0].close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await servers[0].wait_closed()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(5)
    maps = Maps.from_param(cfg, "local_recipient_maps")
    try:
        assert maps.lookup("root").startswith("root:")
        assert maps.lookup("no-such-user-q7x") is None
    finally:
        maps.tables[0].close()
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
