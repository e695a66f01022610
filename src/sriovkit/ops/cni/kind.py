"""What a kind of attachment plugs into the CNI lifecycle (ops/cni/lifecycle.py).

The lifecycle owns everything that is the same for a VF, a bond of VFs or any later kind:
locks, records, reclaiming allocations whose pod is gone, the idempotent ADD, DEL (also with
the pod's netns gone), CHECK, GC, STATUS, IPAM delegation and the rollback stack. A kind owns
only its own steps, called by the lifecycle in this order:

    ADD    choose -> resolve -> (locks of every device) -> new_record -> (records written)
           -> host_side -> (IPAM started) -> into_pod -> (IPAM result) -> result
           -> (addresses, announcement, record committed)
    DEL    restore (the lifecycle releases IPAM meanwhile or after, then deletes the records)
    CHECK  check_conf, verify

Every step that changes the host registers its undo on the `Rollback` it is given, before or
as it succeeds. A kind is found by the CNI config's `type` for ADD and CHECK (the plugin table
in ops/cni/plugins.py) and by its record's `kind` tag for DEL and GC, so a DEL needs nothing
but the record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Generic, TypeVar

from sriovkit.host.netlink import LinkInfo, Netlink
from sriovkit.model.attachment import Attachment, AttachmentKey
from sriovkit.model.cni import CniEnv, NetConf
from sriovkit.model.cni_result import CniResult
from sriovkit.ops.cni.context import AttachContext
from sriovkit.ops.cni.rollback import Rollback

TargetT = TypeVar("TargetT")
RecordT = TypeVar("RecordT", bound=Attachment)


class Kind(ABC, Generic[TargetT, RecordT]):
    """The steps of one kind of attachment; `TargetT` is what `resolve` finds on the host."""

    name: str
    """The records' `kind` tag (model.attachment.ATTACHMENT_KINDS)."""

    def choose(
        self, ctx: AttachContext, conf: NetConf, env: CniEnv
    ) -> AbstractContextManager[NetConf]:
        """ADD's config with its device chosen, for configs that name a pool, not a device.

        Entered before `resolve` and held for the whole ADD, so a kind that chooses among
        devices (the VF kind, from the devices kubelet gave the pod) can hold a lock that
        makes two ADDs choose one after the other. By default: the config as it is, no lock.
        """
        return nullcontext(conf)

    @abstractmethod
    def resolve(self, ctx: AttachContext, conf: NetConf) -> TargetT:
        """What the config asks for, found on the host; InvalidInput if it names nothing usable.

        Runs before any lock is taken and again once they are held (a reclaimed device may
        just have come back from a pod), so it only reads.
        """

    @abstractmethod
    def devices(self, target: TargetT) -> Sequence[str]:
        """The PCI functions the attachment will hold: one allocation and one lock each."""

    @abstractmethod
    def describe(self, devices: Sequence[str]) -> str:
        """How messages name what is held (`VF 0000:3b:02.1`)."""

    @abstractmethod
    def needs_pod(self, target: TargetT) -> bool:
        """Whether ADD moves a netdev into the pod (else, say DPDK, the pod opens the device)."""

    @abstractmethod
    def new_record(
        self, ctx: AttachContext, conf: NetConf, target: TargetT, key: AttachmentKey, netns: Path
    ) -> RecordT:
        """The pending record: everything DEL needs, captured before anything changes."""

    @abstractmethod
    def host_side(
        self, ctx: AttachContext, conf: NetConf, target: TargetT, record: RecordT,
        rollback: Rollback, to_pod: bool,
    ) -> Any:  # fmt: skip
        """The host-side changes before the move (a PF's VF attributes); returns what
        `into_pod` needs to know of them."""

    @abstractmethod
    def into_pod(
        self, ctx: AttachContext, pod: Netlink, conf: NetConf, record: RecordT, netns: Path,
        state: Any, rollback: Rollback,
    ) -> LinkInfo:  # fmt: skip
        """Move the netdev into the pod as `record.ifname`; returns it as the pod sees it."""

    @abstractmethod
    def result(
        self, ctx: AttachContext, conf: NetConf, record: RecordT, link: LinkInfo | None,
        ipam: CniResult,
    ) -> CniResult:  # fmt: skip
        """The CNI result: the interface(s) and IPAM's addresses, routes and DNS."""

    @abstractmethod
    def restore(
        self, ctx: AttachContext, record: RecordT, unaddressed: Callable[[], None] | None = None
    ) -> None:
        """Give everything `record` holds back as it was; raise (records kept) if it cannot.

        `unaddressed`, if given, is called once the pod holds none of the addresses the record's
        result lists (the lifecycle then releases them while the rest of the restore runs).
        """

    @abstractmethod
    def check_conf(self, conf: NetConf, record: RecordT) -> None:
        """CHECK: CheckFailed when the config names other devices than the record holds."""

    @abstractmethod
    def verify(self, ctx: AttachContext, record: RecordT, prev: CniResult | None) -> None:
        """CHECK: CheckFailed naming every difference between the host and `record`."""


AnyKind = Kind[Any, Any]
"""A kind whose target and record types do not matter to the caller (the lifecycle)."""


__all__ = ["AnyKind", "Kind"]
