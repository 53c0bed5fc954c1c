package loadgen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// A Template is a URL path or request body with placeholders, expanded once per request:
//
//	{n}       the request's sequence number in this run: 0, 1, 2 … (unique per request)
//	{run}     a random number fixed for the whole run (fresh keys across repeated runs)
//	{rand}    a random number in [0, 2^63)
//	{key:N}   a key drawn uniformly from 0 … N-1 (N ≥ 1)
//
// Within one request, every occurrence of a placeholder expands to the same value, in the
// URL and in the body alike (so "/read/k{n}" and `{"key":"k{n}"}` name the same key). Any
// other text, including JSON braces, is copied as is.
type Template struct {
	parts  []part
	static bool
}

type partKind uint8

const (
	literal partKind = iota
	seqVar
	runVar
	randVar
	keyVar
)

type part struct {
	kind partKind
	text string // literal text
	key  int    // keyVar: index into the TemplateSet's key spaces
	n    uint64 // keyVar: the size of the key space
}

// A TemplateSet is the templates of one request spec (URL and body): placeholders of the
// same name share one value per request.
type TemplateSet struct {
	Templates []Template
	keySpaces []uint64 // the distinct N of the {key:N} placeholders, in order of appearance
	usesRand  bool
}

// Values are one request's placeholder values.
type Values struct {
	Seq  uint64
	Run  uint64
	Rand uint64
	Keys []uint64 // one per key space of the TemplateSet
}

// ParseTemplates parses texts as templates sharing one set of values per request.
func ParseTemplates(texts ...string) (*TemplateSet, error) {
	s := &TemplateSet{Templates: make([]Template, len(texts))}
	for i, text := range texts {
		t, err := s.parse(text)
		if err != nil {
			return nil, err
		}
		s.Templates[i] = t
	}
	return s, nil
}

func (s *TemplateSet) parse(text string) (Template, error) {
	var t Template
	lit := 0 // start of the pending literal text
	flush := func(end int) {
		if end > lit {
			t.parts = append(t.parts, part{kind: literal, text: text[lit:end]})
		}
	}
	for i := 0; i < len(text); {
		if text[i] != '{' {
			i++
			continue
		}
		end := strings.IndexByte(text[i:], '}')
		if end < 0 {
			break
		}
		name := text[i+1 : i+end]
		p, ok, err := s.placeholder(name)
		if err != nil {
			return Template{}, fmt.Errorf("template %q: %w", text, err)
		}
		if !ok {
			i++ // not a placeholder: a literal brace
			continue
		}
		flush(i)
		t.parts = append(t.parts, p)
		i += end + 1
		lit = i
	}
	flush(len(text))
	t.static = len(t.parts) == 0 || (len(t.parts) == 1 && t.parts[0].kind == literal)
	return t, nil
}

// placeholder recognises name ("n", "run", "rand", "key:N"); ok is false for other text.
func (s *TemplateSet) placeholder(name string) (part, bool, error) {
	switch name {
	case "n":
		return part{kind: seqVar}, true, nil
	case "run":
		return part{kind: runVar}, true, nil
	case "rand":
		s.usesRand = true
		return part{kind: randVar}, true, nil
	}
	digits, ok := strings.CutPrefix(name, "key:")
	if !ok {
		return part{}, false, nil
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 {
		return part{}, false, fmt.Errorf("{key:%s}: N must be an integer from 1 to 2^64-1", digits)
	}
	for i, m := range s.keySpaces {
		if m == n {
			return part{kind: keyVar, key: i, n: n}, true, nil
		}
	}
	s.keySpaces = append(s.keySpaces, n)
	return part{kind: keyVar, key: len(s.keySpaces) - 1, n: n}, true, nil
}

// Draw sets v to the values of the request with sequence number seq, drawing the random
// ones from r.
func (s *TemplateSet) Draw(v *Values, seq uint64, r *rand.Rand) {
	v.Seq = seq
	if s.usesRand {
		v.Rand = r.Uint64() >> 1
	}
	if cap(v.Keys) < len(s.keySpaces) {
		v.Keys = make([]uint64, len(s.keySpaces))
	}
	v.Keys = v.Keys[:len(s.keySpaces)]
	for i, n := range s.keySpaces {
		v.Keys[i] = r.Uint64N(n)
	}
}

// Static reports whether t has no placeholders, so that it expands to the same text always.
func (t Template) Static() bool { return t.static }

// String returns the template's text, placeholders included.
func (t Template) String() string {
	var b strings.Builder
	for _, p := range t.parts {
		switch p.kind {
		case literal:
			b.WriteString(p.text)
		case seqVar:
			b.WriteString("{n}")
		case runVar:
			b.WriteString("{run}")
		case randVar:
			b.WriteString("{rand}")
		case keyVar:
			b.WriteString("{key:" + strconv.FormatUint(p.n, 10) + "}")
		}
	}
	return b.String()
}

// Append appends t expanded with v to dst.
func (t Template) Append(dst []byte, v *Values) []byte {
	for _, p := range t.parts {
		switch p.kind {
		case literal:
			dst = append(dst, p.text...)
		case seqVar:
			dst = strconv.AppendUint(dst, v.Seq, 10)
		case runVar:
			dst = strconv.AppendUint(dst, v.Run, 10)
		case randVar:
			dst = strconv.AppendUint(dst, v.Rand, 10)
		case keyVar:
			dst = strconv.AppendUint(dst, v.Keys[p.key], 10)
		}
	}
	return dst
}
