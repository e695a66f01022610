"""The CNI lifecycle and its kinds of attachment.

- lifecycle.py: ADD and DEL for any kind (locks, records, reclaim, IPAM, rollback);
  upkeep.py: CHECK, GC and STATUS; kind.py: what a kind plugs into them;
  plugins.py: the plugin table by the config's `type`.
- context.py (the seams), ipam.py (IPAM delegation), pod.py (pod-side steps every kind shares),
  rollback.py (the undo stack).
- vf/: the VF kind (the `sriov` plugin).
"""
