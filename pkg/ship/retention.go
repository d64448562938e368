package ship

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseRetention reads a retention period: a number of days ("400d") or
// anything time.ParseDuration takes ("72h").
func ParseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(d, 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("ship: retention %q: want a positive number of days such as 400d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("ship: retention %q: want a positive duration such as 400d or 72h", s)
	}
	return d, nil
}
