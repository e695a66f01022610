"""Discovery's passes on a simulated host (no agent), and the kernel event parsers."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from sriovkit.deviceplugin.discovery import Discovery
from sriovkit.host.events import Event, parse_link_messages, parse_uevent
from sriovkit.host.netlink import LinkChange
from sriovkit.model.pci import PciAddress
from sriovkit.sim import create_host
from sriovkit.sim.events import SimEvents
from sriovkit.sim.kernel import SimSysfs, load_module
from sriovkit.sim.netlink import FakeNetlink

VF = "0000:3b:10.1"  # port 1's VF 0
PF0 = "0000:3b:00.0"


def _discovery(tmp_path: Path) -> tuple[Path, Discovery]:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(
        {"resourceList": [{"resourceName": "igb", "selectors": {"drivers": ["igbvf"]}}]}
    ))  # fmt: skip
    return host, Discovery(host, config, FakeNetlink(host))


def _health(d: Discovery) -> dict[str, bool]:
    return {dev.id: dev.healthy for dev in d.feeds[0].current().devices}


def test_an_unbound_vf_stays_unhealthy_in_its_pool_until_rebound(tmp_path: Path) -> None:
    host, d = _discovery(tmp_path)
    sysfs = SimSysfs(host)
    sysfs.write("sys/bus/pci/drivers/igbvf/unbind", VF)
    assert d.full_pass() == ["intel.com/igb"]
    assert _health(d)[VF] is False and sum(_health(d).values()) == 3
    sysfs.write("sys/bus/pci/drivers/igbvf/bind", VF)
    d.full_pass()
    assert all(_health(d).values()) and len(_health(d)) == 4


def test_unchanged_host_pushes_nothing(tmp_path: Path) -> None:
    _, d = _discovery(tmp_path)
    generation = d.feeds[0].current().generation
    assert d.full_pass() == [] and d.links_pass() == []
    assert d.feeds[0].current().generation == generation


def test_the_policy_survives_rediscovery_and_follows_a_config_edit(tmp_path: Path) -> None:
    host, _ = _discovery(tmp_path)
    config = tmp_path / "config.json"
    entry = {"resourceName": "igb", "selectors": {"drivers": ["igbvf"]}}
    config.write_text(json.dumps({"resourceList": [{**entry, "preferredAllocation": "spread"}]}))
    d = Discovery(host, config, FakeNetlink(host))
    assert d.feeds[0].current().policy == "spread"
    SimSysfs(host).write("sys/bus/pci/drivers/igbvf/unbind", VF)
    assert d.full_pass() == ["intel.com/igb"]  # an update of the list keeps the policy
    assert d.feeds[0].current().policy == "spread"
    generation = d.feeds[0].current().generation
    config.write_text(json.dumps({"resourceList": [{**entry, "preferredAllocation": "pack"}]}))
    d.full_pass(config_changed=True)
    assert d.feeds[0].current().policy == "pack"
    # The edit also dropped the stale VF (a config change does): one push, for the list only.
    assert d.feeds[0].current().generation == generation + 1


def test_vf_netdev_admin_up_without_carrier_is_unhealthy(tmp_path: Path) -> None:
    host, d = _discovery(tmp_path)
    FakeNetlink(host).set_link("enp59s0f1v0", LinkChange(up=True))
    FakeNetlink(host).set_carrier("enp59s0f1v0", False)
    d.links_pass()
    assert _health(d)[VF] is False
    FakeNetlink(host).set_carrier("enp59s0f1v0", True)
    d.links_pass()
    assert _health(d)[VF] is True


def test_the_simulated_kernel_publishes_its_changes(tmp_path: Path) -> None:
    host, _ = _discovery(tmp_path)
    events = SimEvents(host)
    try:
        SimSysfs(host).write("sys/bus/pci/drivers/igbvf/unbind", VF)
        FakeNetlink(host).set_carrier("enp59s0f0", False)
        assert events.read() == [Event("device", VF), Event("link", "enp59s0f0")]
    finally:
        events.close()


def test_parsers() -> None:
    name = b"eth7\0"
    attr = struct.pack("=HH", 4 + len(name), 3) + name + b"\0" * (-len(name) % 4)
    body = struct.pack("=BBHiII", 0, 0, 1, 7, 0, 0) + attr
    msg = struct.pack("=IHHII", 16 + len(body), 16, 0, 0, 0) + body
    assert parse_link_messages(msg * 2) == [Event("link", "eth7", "new")] * 2
    uevent = (
        b"bind@/devices/pci0000:00/0000:00:02.0\0ACTION=bind\0SUBSYSTEM=pci\0"
        b"PCI_SLOT_NAME=0000:00:02.0\0"
    )
    assert parse_uevent(uevent) == Event("device", "0000:00:02.0", "bind")
    assert parse_uevent(b"change@/x\0ACTION=change\0SUBSYSTEM=pci\0") is None


def test_a_named_link_event_reads_that_link_only(tmp_path: Path) -> None:
    host, d = _discovery(tmp_path)
    FakeNetlink(host).set_carrier("enp59s0f1", False)
    assert d.links_pass({"enp59s0f1"}) == ["intel.com/igb"]
    assert {k for k, ok in _health(d).items() if not ok} == {"0000:3b:10.1", "0000:3b:10.3"}
    assert d.links_pass({"gone0"}) == []


def test_a_change_on_one_pf_rereads_that_family_and_finds_what_a_full_pass_finds(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host"
    create_host(host, ["82576"], vfs=2, extras=False)
    load_module(host, "vfio-pci")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"resourceList": [
        {"resourceName": "igb", "selectors": {"drivers": ["igbvf"]}},
        {"resourceName": "vfio", "selectors": {"drivers": ["vfio-pci"]}},
    ]}))  # fmt: skip
    whole = Discovery(host, config, FakeNetlink(host))
    part = Discovery(host, config, FakeNetlink(host))
    sysfs, pf0, pf1 = SimSysfs(host), PciAddress.parse(PF0), PciAddress.parse("0000:3b:00.1")
    vf, events = PciAddress.parse(VF), SimEvents(host)

    def both() -> set[PciAddress] | None:
        families = part.families(events.read())
        whole.full_pass()
        if families:
            part.family_pass(families)
        assert [f.current() for f in part.feeds] == [f.current() for f in whole.feeds]
        return families

    try:
        sysfs.unbind(vf, "igbvf")  # stays listed, stale
        assert both() == {pf1}
        sysfs.set_driver_override(vf, "vfio-pci")
        sysfs.drivers_probe(vf)  # moves to the vfio pool
        assert both() == {pf1}
        assert [d.id for d in part.feeds[1].current().devices] == [VF]
        sysfs.set_num_vfs(pf0, 0)  # PF 0's VFs leave, then come back, one more
        assert both() == {pf0}
        sysfs.set_num_vfs(pf0, 3)
        assert both() == {pf0}
        assert len(part.feeds[0].current().devices) == 4
        assert part.passes["full"] == 0 and part.passes["family"] == 4
        # A netdev named by its event is placed by its function; one of no PCI function (a
        # pod's veth) changes no pool; an event naming nothing reads the whole host.
        assert part.families([Event("device", "enp59s0f1v1")]) == {pf1}
        assert part.families([Event("device", "veth0"), Event("link", "veth0")]) == set()
        assert part.families([Event("device", None)]) is None
        assert part.families([Event("device", "0000:3b:1f.7")]) is None  # not on this host
    finally:
        events.close()
