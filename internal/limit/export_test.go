package limit

import "time"

// SetNow replaces the clock, for tests.
func (k *Keyed) SetNow(now func() time.Time) { k.now = now }
