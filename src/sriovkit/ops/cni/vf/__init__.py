"""The VF kind of attachment (`sriov` plugin): see kind.py; device.py finds and returns a VF."""
