// Package configerr builds the errors the components return for a Config
// they cannot run with. The text is one line that names the package and
// the field ("router: MaxQueued must be > 0 (got -1)"), so a command can
// print it as it is; errors.Is matches the package's sentinel, so a
// caller can tell a bad config from a failure at run time.
package configerr

import "fmt"

// Error is a config error: its own text, matching every error in is.
type Error struct {
	msg string
	is  []error
}

func (e *Error) Error() string   { return e.msg }
func (e *Error) Unwrap() []error { return e.is }

// Checker makes one package's config errors: each matches Sentinel and
// its text starts with Pkg and ": ".
type Checker struct {
	Sentinel error
	Pkg      string
}

// New returns the error Pkg+": "+format.
func (k Checker) New(format string, args ...any) error {
	return &Error{msg: k.Pkg + ": " + fmt.Sprintf(format, args...), is: []error{k.Sentinel}}
}

// If is New when bad holds, else nil.
func (k Checker) If(bad bool, format string, args ...any) error {
	if !bad {
		return nil
	}
	return k.New(format, args...)
}

// Positive returns nil if v > 0, else the error "<field> must be > 0
// (got v)".
func Positive[T ~int | ~int64 | ~float64](k Checker, field string, v T) error {
	return k.If(v <= 0, "%s must be > 0 (got %v)", field, v)
}

// Wrap returns err with its text unchanged, matching sentinel as well as
// everything err matches: a component that validates the Config of
// another reports the other's error under its own sentinel. Wrap(s, nil)
// is nil.
func Wrap(sentinel, err error) error {
	if err == nil {
		return nil
	}
	return &Error{msg: err.Error(), is: []error{sentinel, err}}
}

// First returns the first non-nil error of errs, so that a Config with
// several bad fields gets a one-line error about the first.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
