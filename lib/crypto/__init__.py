"""Key material: sealing keys for their rows (sealed), where the master key comes from
(master_key), re-encrypting everything under a new one (rotation)."""
