package store

import (
	"slices"
	"strings"
)

// DefaultListLimit is the page size of a list call given no limit.
const DefaultListLimit = 100

// listLimit is the page size for a requested limit.
func listLimit(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return min(limit, MaxListLimit)
}

// listable: id belongs on a page that starts after `after` and is
// filtered by prefix.
func listable(id, prefix, after string) bool {
	return id > after && strings.HasPrefix(id, prefix)
}

// pageOf sorts ids, keeps the listable ones and cuts a page of limit:
// the page, and the next cursor ("" when nothing follows).
func pageOf(ids []string, prefix, after string, limit int) (page []string, next string) {
	ids = slices.DeleteFunc(ids, func(id string) bool { return !listable(id, prefix, after) })
	slices.Sort(ids)
	limit = listLimit(limit)
	if len(ids) > limit {
		return ids[:limit], ids[limit-1]
	}
	return ids, ""
}
