"""Plugins add their own lines to ``anywhere doctor`` (``anywhere_doctor``); a plugin's
broken check is a failed line naming it, never a crash of the doctor."""

from __future__ import annotations

import asyncio

from anywhere.bridge import DoctorCheck, hookimpl
from anywhere.bridge.config import load_config
from anywhere.bridge.doctor import Report, check_plugins
from anywhere.bridge.pluginmanager import PluginManager


class Careful:
    @hookimpl
    async def anywhere_doctor(self, bridge):
        await asyncio.sleep(0)
        return [
            DoctorCheck.ok("careful", f"prefix is {bridge.config['bridge.command_prefix']}"),
            DoctorCheck.warn("careful disk", "almost full", "make room"),
        ]


class Broken:
    @hookimpl
    def anywhere_doctor(self, bridge):
        raise RuntimeError("cannot reach the carrier API")


class Sloppy:
    @hookimpl
    def anywhere_doctor(self, bridge):
        return ["all good"]


async def test_plugin_checks_print_one_line_each_and_failures_name_the_plugin(config_file, capsys):
    manager = PluginManager()
    for plugin, name in ((Careful(), "careful"), (Broken(), "broken"), (Sloppy(), "sloppy")):
        manager.register(plugin, name)
    report = Report()
    await check_plugins(report, load_config(config_file, environ={}), manager)
    lines = capsys.readouterr().out.splitlines()
    assert "[ok  ] careful: prefix is !" in lines
    assert "[warn] careful disk: almost full — make room" in lines
    assert "[FAIL] broken: its checks failed: RuntimeError: cannot reach the carrier API" in lines
    assert "[FAIL] sloppy: returned 'all good', not a DoctorCheck" in lines
    assert report.failed
