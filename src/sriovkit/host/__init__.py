"""The only place that touches the machine: one seam per resource, root/backend passed in."""
