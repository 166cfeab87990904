package spectest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Script is one wast2json output file: the commands of one .wast script.
type Script struct {
	SourceFilename string    `json:"source_filename"`
	Commands       []Command `json:"commands"`
}

// Command is one command of a script. Which fields are meaningful depends on
// Type:
//
//   - "module": Filename, and Name if the module is named.
//   - "register": As, and Name if a named module (rather than the current
//     one) is registered.
//   - "action", "assert_return", "assert_trap", "assert_exhaustion": Action
//     and Expected (for traps and exhaustion, Expected lists types only);
//     Text is the expected trap message.
//   - "assert_invalid", "assert_malformed", "assert_unlinkable",
//     "assert_uninstantiable" (and "assert_trap" on a module): Filename,
//     ModuleType ("binary" or "text") and Text, the expected error message.
type Command struct {
	Type       string  `json:"type"`
	Line       int     `json:"line"`
	Filename   string  `json:"filename"`
	Name       string  `json:"name"`
	As         string  `json:"as"`
	Action     *Action `json:"action"`
	Expected   []Value `json:"expected"`
	Text       string  `json:"text"`
	ModuleType string  `json:"module_type"`
}

// Action is an invocation of an exported function or a read of an exported
// global.
type Action struct {
	Type   string  `json:"type"`   // "invoke" or "get"
	Module string  `json:"module"` // a module name such as "$M"; empty for the current module
	Field  string  `json:"field"`
	Args   []Value `json:"args"`
}

// Value is a typed value as wast2json writes it. Scalar values are decimal
// strings of the value's bit pattern, or "nan:canonical", "nan:arithmetic"
// (expected floats) or "null" (references); v128 values are lists of lane
// strings. Values of assert_trap and assert_exhaustion results carry a type
// only.
type Value struct {
	Type string
	// Value is the scalar value; empty if the value is absent or a list.
	Value string
	// Lanes holds the lanes of a v128 value.
	Lanes []string
	// HasValue reports whether the value was present at all.
	HasValue bool
}

// UnmarshalJSON decodes {"type": T, "value": V} where V is absent, a string
// or a list of strings.
func (v *Value) UnmarshalJSON(data []byte) error {
	var raw struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*v = Value{Type: raw.Type}
	val := bytes.TrimSpace(raw.Value)
	switch {
	case len(val) == 0 || bytes.Equal(val, []byte("null")):
	case val[0] == '"':
		if err := json.Unmarshal(val, &v.Value); err != nil {
			return fmt.Errorf("value of type %q: %w", raw.Type, err)
		}
		v.HasValue = true
	case val[0] == '[':
		if err := json.Unmarshal(val, &v.Lanes); err != nil {
			return fmt.Errorf("value of type %q: %w", raw.Type, err)
		}
		v.HasValue = true
	default:
		return fmt.Errorf("value of type %q: want a string or a list of strings, got %s", raw.Type, val)
	}
	return nil
}

// ParseScript decodes a wast2json file. Commands are not checked here: a
// command that lacks a field its type needs is reported by Check, so one bad
// command does not hide the others.
func ParseScript(data []byte) (*Script, error) {
	var s Script
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode script: %w", err)
	}
	if s.Commands == nil {
		return nil, errors.New("decode script: no \"commands\" list")
	}
	return &s, nil
}

// Check reports a command of unknown type or one that lacks a field its
// type needs.
func (c *Command) Check() error {
	switch c.Type {
	case "module", "assert_invalid", "assert_malformed", "assert_unlinkable", "assert_uninstantiable":
		if c.Filename == "" {
			return fmt.Errorf("%s without a filename", c.Type)
		}
	case "register":
		if c.As == "" {
			return errors.New("register without \"as\"")
		}
	case "action", "assert_return", "assert_exhaustion":
		return c.checkAction()
	case "assert_trap":
		if c.Action == nil && c.Filename == "" {
			return errors.New("assert_trap without an action or a filename")
		}
		if c.Action != nil {
			return c.checkAction()
		}
	case "":
		return errors.New("command without a type")
	default:
		return fmt.Errorf("unknown command type %q", c.Type)
	}
	return nil
}

func (c *Command) checkAction() error {
	if c.Action == nil {
		return fmt.Errorf("%s without an action", c.Type)
	}
	switch c.Action.Type {
	case "invoke", "get":
	default:
		return fmt.Errorf("%s: unknown action type %q", c.Type, c.Action.Type)
	}
	return nil
}

// usesV128 reports whether the command passes or expects a v128 value.
func (c *Command) usesV128() bool {
	if c.Action != nil {
		for _, v := range c.Action.Args {
			if v.Type == "v128" {
				return true
			}
		}
	}
	for _, v := range c.Expected {
		if v.Type == "v128" {
			return true
		}
	}
	return false
}

// isModuleAssertion reports whether the command is an assertion about a
// module rather than about an action.
func (c *Command) isModuleAssertion() bool {
	switch c.Type {
	case "assert_invalid", "assert_malformed", "assert_unlinkable", "assert_uninstantiable":
		return true
	case "assert_trap":
		return c.Action == nil
	}
	return false
}
