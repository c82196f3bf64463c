package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// node is one JSON value of a policy document. Parse reads the document
// into a tree of nodes rather than into structs so that it can keep the
// order of object members, reject duplicate members, and report every
// mistake by its path in the document.
type node struct {
	kind   nodeKind
	text   string // string value, number text, or "true"/"false"
	items  []node
	fields []field
}

type field struct {
	name string
	val  node
}

type nodeKind uint8

const (
	kindNull nodeKind = iota
	kindString
	kindNumber
	kindBool
	kindArray
	kindObject
)

func (k nodeKind) String() string {
	switch k {
	case kindString:
		return "a string"
	case kindNumber:
		return "a number"
	case kindBool:
		return "a boolean"
	case kindArray:
		return "an array"
	case kindObject:
		return "an object"
	}
	return "null"
}

// maxDepth bounds nesting. A valid policy nests seven deep (document,
// Statement array, statement, Condition, operator, key, values); the
// bound only stops pathological input early.
const maxDepth = 16

// readJSON reads one JSON value, which must be the whole of data.
func readJSON(data []byte) (node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readValue(dec, 0)
	if err != nil {
		return node{}, jsonError(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return node{}, malformed("invalid JSON at byte %d: unexpected data after the policy object", dec.InputOffset())
	}
	return n, nil
}

func jsonError(dec *json.Decoder, err error) error {
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		return malformed("invalid JSON at byte %d: %s", syn.Offset, syn.Error())
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return malformed("invalid JSON at byte %d: unexpected end of document", dec.InputOffset())
	case isMalformed(err):
		return err
	}
	return malformed("invalid JSON at byte %d: %v", dec.InputOffset(), err)
}

func readValue(dec *json.Decoder, depth int) (node, error) {
	if depth > maxDepth {
		return node{}, malformed("invalid JSON at byte %d: nested more than %d deep", dec.InputOffset(), maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return node{}, err
	}
	switch t := tok.(type) {
	case nil:
		return node{kind: kindNull}, nil
	case string:
		return node{kind: kindString, text: t}, nil
	case json.Number:
		return node{kind: kindNumber, text: t.String()}, nil
	case bool:
		return node{kind: kindBool, text: fmt.Sprint(t)}, nil
	case json.Delim:
		switch t {
		case '[':
			n := node{kind: kindArray, items: []node{}}
			for dec.More() {
				item, err := readValue(dec, depth+1)
				if err != nil {
					return node{}, err
				}
				n.items = append(n.items, item)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return node{}, err
			}
			return n, nil
		case '{':
			n := node{kind: kindObject, fields: []field{}}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return node{}, err
				}
				name, _ := tok.(string) // the decoder guarantees a string key
				val, err := readValue(dec, depth+1)
				if err != nil {
					return node{}, err
				}
				n.fields = append(n.fields, field{name: name, val: val})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return node{}, err
			}
			return n, nil
		}
	}
	return node{}, fmt.Errorf("unexpected token %v", tok)
}
