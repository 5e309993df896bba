"""Who is in each room: awareness states (cursors, selections) and the authoritative member list."""
