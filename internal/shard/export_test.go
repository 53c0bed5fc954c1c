package shard

// SetBeforeDelete installs a hook that runs between the copy and the delete of each page.
func SetBeforeDelete(m *Mover, f func()) { m.beforeDelete = f }
