package api

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
)

// The password policy of new passwords. A password is refused when it is
// shorter than minPasswordRunes characters, longer than maxPasswordBytes
// bytes (hashing cost stays bounded), only white space, or too easy to
// guess: zxcvbn's score under minPasswordScore.
//
// zxcvbn estimates the guesses an attacker who knows common passwords,
// words, names, keyboard patterns, dates and the user's own id needs.
// Score 3 means at least 10^8 guesses: online, behind the login
// throttling (a handful a second per address, about 100 a day per
// account), that is out of reach; offline, against a leaked argon2id hash
// (tens of milliseconds and 19 MiB each), it is years of one GPU. Score 4
// (10^10) would refuse many passphrases people can remember, such as
// three unrelated words, for little gain behind argon2id.
const (
	minPasswordRunes = 8
	maxPasswordBytes = 1024
	minPasswordScore = 3
	// maxScoredBytes is the prefix of a password zxcvbn scores: its cost
	// grows faster than linearly with the length, and a password whose
	// first 100 bytes are hard to guess is hard to guess.
	maxScoredBytes = 100
)

var (
	errInvalidPassword = newError(http.StatusBadRequest, "invalid_password",
		fmt.Sprintf("password must be %d characters to %d bytes", minPasswordRunes, maxPasswordBytes))
	errPasswordTooLong = newError(http.StatusBadRequest, "invalid_password",
		fmt.Sprintf("password must be at most %d bytes", maxPasswordBytes))
	errBlankPassword = newError(http.StatusBadRequest, "weak_password",
		"password must not be only white space")
)

// checkNewPassword applies the password policy to pw, the new password of
// id. The refusal says why.
func checkNewPassword(id, pw string) *apiError {
	if len(pw) > maxPasswordBytes || utf8.RuneCountInString(pw) < minPasswordRunes {
		return errInvalidPassword
	}
	if strings.TrimSpace(pw) == "" {
		return errBlankPassword
	}
	r := zxcvbn.PasswordStrength(scoredPrefix(pw), []string{id})
	if r.Score >= minPasswordScore {
		return nil
	}
	var why []string
	add := func(s string) {
		for _, w := range why {
			if w == s {
				return
			}
		}
		why = append(why, s)
	}
	for _, m := range r.Sequence {
		switch m.Pattern {
		case "dictionary":
			switch m.DictionaryName {
			case "user_inputs":
				add("contains the id")
			case "passwords":
				add("is or contains a common password")
			default:
				add("contains a common word or name")
			}
		case "spatial":
			add("contains a keyboard pattern")
		case "repeat":
			add("repeats characters or words")
		case "sequence":
			add("contains a sequence such as abc or 123")
		case "regex", "date":
			add("contains a date or year")
		}
	}
	msg := "password is too easy to guess"
	if len(why) > 0 {
		msg += ": it " + strings.Join(why, ", ")
	}
	msg += "; use a longer password, such as four or more unrelated words"
	return newError(http.StatusBadRequest, "weak_password", msg)
}

// scoredPrefix is pw cut to at most maxScoredBytes bytes, on a character
// boundary.
func scoredPrefix(pw string) string {
	if len(pw) <= maxScoredBytes {
		return pw
	}
	cut := maxScoredBytes
	for cut > 0 && !utf8.RuneStart(pw[cut]) {
		cut--
	}
	return pw[:cut]
}
