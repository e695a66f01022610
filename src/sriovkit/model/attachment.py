"""Records the CNI plugin keeps on disk: who holds which VF and what the VF looked like before.

Pure: no OS access (host/state.py reads and writes them). Records are msgspec Structs encoded as
JSON with a `schema` number, so a newer agent can recognise (and refuse) a record it cannot read
instead of misreading it while restoring a VF.

Container ids and interface names end up in file names, so they are checked here once with the
CNI spec's rules (which already exclude `/` and `..`) plus a length bound.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import msgspec

from sriovkit.errors import InvalidInput
from sriovkit.model.pci import PciAddress
from sriovkit.model.vf import LinkState, VfInfo, VfSettings, VlanProto

SCHEMA = 1
"""Version of the record layout written by this code."""

MAX_CONTAINER_ID = 200
"""Longest container id accepted: `<id>@<ifname>.json` must stay under NAME_MAX (255)."""

# CNI spec: a container id starts with an alphanumeric, then alphanumerics, `_`, `.` or `-`.
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
# Linux dev_valid_name(): < IFNAMSIZ (16) bytes, no `/`, `:` or whitespace, not `.` or `..`.
_IFNAME_BAD = re.compile(r"[/:\s]")
IFNAMSIZ = 16


def check_container_id(text: str, field: str = "container id") -> str:
    """`text` if it is a valid CNI container id, else InvalidInput naming `field`."""
    if not text:
        raise InvalidInput(field, "must not be empty")
    if len(text) > MAX_CONTAINER_ID:
        raise InvalidInput(field, f"{len(text)} characters is more than {MAX_CONTAINER_ID}")
    if not _CONTAINER_ID.fullmatch(text):
        raise InvalidInput(
            field,
            f"{text!r} must start with a letter or digit and contain only letters, digits, "
            "'_', '.' and '-'",
        )
    return text


def check_ifname(text: str, field: str = "ifname") -> str:
    """`text` if the kernel would accept it as an interface name, else InvalidInput."""
    if not text:
        raise InvalidInput(field, "must not be empty")
    if len(text.encode()) >= IFNAMSIZ:
        raise InvalidInput(field, f"{text!r} is longer than {IFNAMSIZ - 1} bytes")
    if text in {".", ".."}:
        raise InvalidInput(field, f"{text!r} is not a usable interface name")
    if _IFNAME_BAD.search(text) or "\0" in text:
        raise InvalidInput(field, f"{text!r} contains '/', ':', NUL or whitespace")
    return text


@dataclass(frozen=True, slots=True, order=True)
class AttachmentKey:
    """The (container id, interface name) pair a runtime attaches a network to, validated."""

    container_id: str
    ifname: str

    def __post_init__(self) -> None:
        check_container_id(self.container_id)
        check_ifname(self.ifname)

    def __str__(self) -> str:
        return f"{self.container_id}/{self.ifname}"


class VfOriginalState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything about a VF that ADD changes, captured before the change, so DEL restores it.

    `admin_mac` is what the PF reports for the VF (IFLA_VF_MAC, all-zero when never set);
    `effective_mac` is the VF netdev's own address. Both are restored: some drivers (e.g. i40e
    with trust off) refuse a netdev MAC change unless the admin MAC is put back first.
    `netns` None means the host (initial) namespace. `pf_side` False: ADD set no PF-side
    attribute, so none was read (the PF's view of the VF is left alone from ADD to DEL, as a
    pod cannot change it but for the MAC, which comes back with the netdev's); the PF-side
    fields then hold their defaults and `vf_settings` puts nothing back.
    """

    name: str
    admin_mac: str
    effective_mac: str
    vlan: int = 0
    qos: int = 0
    proto: VlanProto = VlanProto.DOT1Q
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: LinkState = LinkState.AUTO
    min_tx_rate: int = 0
    max_tx_rate: int = 0
    mtu: int = 1500
    netns: str | None = None
    up: bool = False
    altnames: tuple[str, ...] = ()
    pf_side: bool = True

    @classmethod
    def capture(
        cls,
        info: VfInfo | None,
        *,
        name: str,
        effective_mac: str,
        mtu: int,
        netns: str | None = None,
        up: bool = False,
        altnames: tuple[str, ...] = (),
    ) -> VfOriginalState:
        """The original state from the PF's view of the VF (None: not read, see `pf_side`)
        plus its netdev's name, MAC, MTU."""
        if info is None:
            return cls(
                name=name, admin_mac="", effective_mac=effective_mac, mtu=mtu, netns=netns,
                up=up, altnames=altnames, pf_side=False,
            )  # fmt: skip
        return cls(
            name=name,
            admin_mac=info.mac,
            effective_mac=effective_mac,
            vlan=info.vlan,
            qos=info.qos,
            proto=info.proto,
            spoofchk=info.spoofchk,
            trust=info.trust,
            link_state=info.link_state,
            min_tx_rate=info.min_tx_rate,
            max_tx_rate=info.max_tx_rate,
            mtu=mtu,
            netns=netns,
            up=up,
            altnames=altnames,
        )

    def vf_settings(self) -> VfSettings:
        """PF-side settings that put the VF back (spoofchk/trust only if the driver had them;
        none when they were not read, `pf_side`)."""
        if not self.pf_side:
            return VfSettings()
        return VfInfo(
            index=0,
            mac=self.admin_mac,
            vlan=self.vlan,
            qos=self.qos,
            proto=self.proto,
            spoofchk=self.spoofchk,
            trust=self.trust,
            link_state=self.link_state,
            min_tx_rate=self.min_tx_rate,
            max_tx_rate=self.max_tx_rate,
        ).as_settings()


class AppliedState(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What ADD set: the PF-side VF attributes asked for, and the pod-side netdev settings."""

    mac: str | None = None
    vlan: int | None = None
    qos: int | None = None
    proto: VlanProto | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: LinkState | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    mtu: int | None = None

    @classmethod
    def from_settings(cls, settings: VfSettings, mtu: int | None = None) -> AppliedState:
        """Record `settings` (and the MTU set on the pod interface)."""
        return cls(**dict(settings.items()), mtu=mtu)

    def vf_settings(self) -> VfSettings:
        """The VF settings part (validated again, as a record may come from an older writer)."""
        return VfSettings(
            mac=self.mac,
            vlan=self.vlan,
            qos=self.qos,
            proto=self.proto,
            spoofchk=self.spoofchk,
            trust=self.trust,
            link_state=self.link_state,
            min_tx_rate=self.min_tx_rate,
            max_tx_rate=self.max_tx_rate,
        )


def _check_pci(text: str, field: str) -> None:
    addr = PciAddress.try_parse(text)
    if addr is None or str(addr) != text:
        raise InvalidInput(field, f"{text!r} is not a canonical PCI address like 0000:3b:02.1")


class _Keyed(msgspec.Struct, frozen=True, kw_only=True):
    """What every record shares: its layout version and the attachment it belongs to."""

    schema: int = SCHEMA
    container_id: str
    ifname: str

    def __post_init__(self) -> None:
        check_container_id(self.container_id, "record container_id")
        check_ifname(self.ifname, "record ifname")

    @property
    def key(self) -> AttachmentKey:
        """The (container id, ifname) attachment."""
        return AttachmentKey(self.container_id, self.ifname)


class Attachment(_Keyed, frozen=True, kw_only=True, tag_field="kind"):
    """One (container id, ifname) attachment of any kind: the generic part every kind shares.

    The records form a tagged union keyed by `kind` (`ATTACHMENT_KINDS`), so the state store
    holds any kind of attachment. A record without `kind` was written before kinds existed: it
    is a VF record (the store reads it as one). `result` is the CNI result ADD returned (1.1.0
    JSON), kept for CHECK and for an ADD retried after its answer was lost. `boot_id` is the
    kernel boot id of the boot whose ADD wrote it (host/boot.py): what the record describes
    dies with that boot, so a record of an earlier boot is never restored from. None (records
    from before the field, or a host whose boot id is unreadable) counts as this boot.
    """

    network: str
    netns: str
    result: dict[str, object] | None = None
    created: float = msgspec.field(default_factory=time.time)
    boot_id: str | None = None

    @property
    def devices(self) -> tuple[str, ...]:
        """The PCI functions this attachment holds (one allocation record each)."""
        raise NotImplementedError(f"{type(self).__name__} does not say what it holds")


class VfAttachment(Attachment, frozen=True, kw_only=True, tag="vf"):
    """A VF in a pod: its PF and index, what ADD applied and what the VF was before."""

    device_id: str
    pf: str | None = None
    vf_index: int | None = None
    applied: AppliedState = msgspec.field(default_factory=AppliedState)
    original: VfOriginalState

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_pci(self.device_id, "record device_id")

    @property
    def devices(self) -> tuple[str, ...]:
        """The VF."""
        return (self.device_id,)

    @property
    def pci(self) -> PciAddress:
        """The VF's PCI address."""
        return PciAddress.parse(self.device_id)


ATTACHMENT_KINDS: dict[str, type[Attachment]] = {"vf": VfAttachment}
"""Record class by its `kind` tag; a new kind of attachment adds its class here."""

LEGACY_KIND = "vf"
"""The kind of a record written before records had one."""


class AllocationRecord(_Keyed, frozen=True, kw_only=True):
    """Which attachment holds a PCI function; one per function, so none is given out twice."""

    device_id: str
    network: str = ""
    created: float = msgspec.field(default_factory=time.time)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_pci(self.device_id, "record device_id")

    @property
    def pci(self) -> PciAddress:
        """The function's PCI address."""
        return PciAddress.parse(self.device_id)


__all__ = [
    "ATTACHMENT_KINDS",
    "IFNAMSIZ",
    "LEGACY_KIND",
    "MAX_CONTAINER_ID",
    "SCHEMA",
    "AllocationRecord",
    "AppliedState",
    "Attachment",
    "AttachmentKey",
    "VfAttachment",
    "VfOriginalState",
    "check_container_id",
    "check_ifname",
]
