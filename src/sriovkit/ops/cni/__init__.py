"""The CNI lifecycle and its kinds of attachment.

- lifecycle.py: ADD / DEL / CHECK / GC / STATUS for any kind (locks, records, reclaim, IPAM,
  rollback); kind.py: what a kind plugs into it; plugins.py: the table by config `type`.
- context.py (the seams), ipam.py (IPAM delegation), pod.py (pod-side steps every kind shares),
  rollback.py (the undo stack).
- vf/: the VF kind (the `sriov` plugin).
"""
