"""Key material: sealing keys for their rows (sealed), and where the master key comes from,
whether it is strong enough and whether it fits this database (master_key)."""
