"""Pure-torch / numpy geometry: cameras, rotations, rigid transforms."""
