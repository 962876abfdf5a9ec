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

// New returns the error pkg+": "+format, matching sentinel.
func New(sentinel error, pkg, format string, args ...any) error {
	return &Error{msg: pkg + ": " + fmt.Sprintf(format, args...), is: []error{sentinel}}
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

// Positive returns nil if v > 0, else the error "<field> must be > 0
// (got v)".
func Positive[T ~int | ~int64 | ~float64](sentinel error, pkg, field string, v T) error {
	if v > 0 {
		return nil
	}
	return New(sentinel, pkg, "%s must be > 0 (got %v)", field, v)
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
