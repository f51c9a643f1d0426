/**
 * A small subset of Go's text/template: enough for Docker's `tag` log-opt (protocol.md §7.2) and for
 * shiplog's path templates. The template runs against the StartLogging `Info`, as in moby's
 * `loggerutils.ParseLogTag`, so `--log-opt tag=...` means here what it means for built-in drivers.
 *
 * Supported
 *   text             copied as is; a template without "{{" is returned unchanged
 *   {{pipeline}}     command ("|" command)*; each command's value is passed as the LAST argument of the
 *                    next one, as in Go: {{.Name | upper}}, {{.Name | truncate 5}} is not valid (use
 *                    {{truncate .Name 5}}), {{index .ContainerLabels "k" | upper}} is
 *   {{- x -}}        trim markers (whitespace before/after the action); {{/* comment *\/}}
 *   operands         .  .Field  .Map.key  "string" (Go escapes)  `raw string`  decimal integers  (pipeline)
 *   Info methods     ID (12 chars), FullID, Name (no leading /), ImageID (sha256: stripped, 12 hex, moby
 *                    master), ImageFullID, ImageName, Command (entrypoint + args joined by spaces),
 *                    DaemonName, Hostname (the daemon host's, passed in)
 *   Info fields      Config, ContainerID, ContainerName, ContainerEntrypoint, ContainerArgs,
 *                    ContainerImageID, ContainerImageName, ContainerCreated, ContainerEnv,
 *                    ContainerLabels, LogPath, DaemonName
 *   functions        index len (Go built-ins); json split join title lower upper pad truncate (moby's
 *                    templates.go: json has no HTML escaping and no trailing newline; `pad s n m` adds n
 *                    spaces before and m after, only if s is non-empty; `truncate s n` keeps n bytes)
 *
 * Not supported (compile error): if/else/range/with/define/template/block, variables ($x), printf and
 * the other Go built-ins, comparisons, nil/true/false, char and non-decimal number literals.
 *
 * Types are checked at compile time (Go checks them when the template runs, which for Docker is also
 * at container start), so a template that compiles renders without throwing. Where Go would fail at
 * run time on a missing value, the result is empty instead:
 *   - {{index .ContainerLabels "missing"}} is "" (as in Go); {{.ContainerLabels.missing}} prints
 *     "<no value>" (as in Go) and is "" when passed to a function (Go: error);
 *   - {{index .ContainerArgs 9}} out of range is "" (Go: error).
 * `truncate` never splits a UTF-8 character (Go's byte slice can); `lower`/`upper` use JS case mapping.
 */
import type { ContainerInfo } from '../container-info.js';

/** A compiled template: renders one container's Info. Never throws. */
export type RenderTemplate = (info: ContainerInfo, hostname: string) => string;

export interface CompileOptions {
  /**
   * The Info fields and methods the template may use (default: all). Path templates rendered from
   * ContainerMeta pass the subset that ContainerMeta carries, so an unavailable field fails at compile time.
   */
  readonly availableFields?: readonly string[];
}

/** Compiles `text`; throws an Error whose message says what is wrong and where (1-based position). */
export function compileTemplate(text: string, options: CompileOptions = {}): RenderTemplate {
  if (!text.includes('{{')) return () => text;
  const available = options.availableFields ? new Set(options.availableFields) : undefined;
  const parts = parseTemplate(text, available);
  return (info, hostname) => {
    const scope = new TemplateScope(info, hostname);
    let out = '';
    for (const part of parts) out += typeof part === 'string' ? part : printValue(part.kind, evaluate(part, scope));
    return out;
  };
}

/** The names `availableFields` may list. */
export function templateFieldNames(): string[] {
  return [...INFO_FIELDS.keys()];
}

// ---------------------------------------------------------------------------------------------------
// Types and values

/** Static types, named as Go prints them in errors. */
type Kind = 'string' | 'int' | '[]string' | 'map[string]string' | 'time.Time' | '*logger.Info';

/** The dot: the container's Info plus the daemon's host name. */
class TemplateScope {
  constructor(readonly info: ContainerInfo, readonly hostname: string) {}
}

/**
 * Run-time values. `undefined` is Go's "no value" (a missing map key reached with .Map.key);
 * `null` is a nil []string (ContainerEnv when the container has no variables). time.Time is its
 * RFC 3339 text.
 */
type Value = string | number | readonly string[] | null | Readonly<Record<string, string>> | TemplateScope | undefined;

interface InfoField {
  readonly kind: Kind;
  get(scope: TemplateScope): Value;
}

const INFO_FIELDS: ReadonlyMap<string, InfoField> = new Map<string, InfoField>([
  // Methods of moby's *logger.Info
  ['ID', { kind: 'string', get: (s) => s.info.ContainerID.slice(0, 12) }],
  ['FullID', { kind: 'string', get: (s) => s.info.ContainerID }],
  ['Name', { kind: 'string', get: (s) => stripPrefix(s.info.ContainerName, '/') }],
  ['ImageID', { kind: 'string', get: (s) => shortImageId(s.info.ContainerImageID) }],
  ['ImageFullID', { kind: 'string', get: (s) => s.info.ContainerImageID }],
  ['ImageName', { kind: 'string', get: (s) => s.info.ContainerImageName }],
  ['Command', { kind: 'string', get: (s) => [s.info.ContainerEntrypoint, ...s.info.ContainerArgs].join(' ') }],
  ['Hostname', { kind: 'string', get: (s) => s.hostname }],
  // Fields of the Info struct, in Go's declaration order (printValue and json of `.` rely on it)
  ['Config', { kind: 'map[string]string', get: (s) => s.info.Config }],
  ['ContainerID', { kind: 'string', get: (s) => s.info.ContainerID }],
  ['ContainerName', { kind: 'string', get: (s) => s.info.ContainerName }],
  ['ContainerEntrypoint', { kind: 'string', get: (s) => s.info.ContainerEntrypoint }],
  ['ContainerArgs', { kind: '[]string', get: (s) => s.info.ContainerArgs }],
  ['ContainerImageID', { kind: 'string', get: (s) => s.info.ContainerImageID }],
  ['ContainerImageName', { kind: 'string', get: (s) => s.info.ContainerImageName }],
  ['ContainerCreated', { kind: 'time.Time', get: (s) => s.info.ContainerCreated }],
  ['ContainerEnv', { kind: '[]string', get: (s) => s.info.ContainerEnv }],
  ['ContainerLabels', { kind: 'map[string]string', get: (s) => s.info.ContainerLabels }],
  ['LogPath', { kind: 'string', get: (s) => s.info.LogPath }],
  ['DaemonName', { kind: 'string', get: (s) => s.info.DaemonName }],
]);

const STRUCT_FIELDS = ['Config', 'ContainerID', 'ContainerName', 'ContainerEntrypoint', 'ContainerArgs', 'ContainerImageID',
  'ContainerImageName', 'ContainerCreated', 'ContainerEnv', 'ContainerLabels', 'LogPath', 'DaemonName'] as const;

function stripPrefix(s: string, prefix: string): string {
  return s.startsWith(prefix) ? s.slice(prefix.length) : s;
}

/** moby's stringid.TruncateID: drop everything up to the first ':' (the algorithm), keep 12 characters. */
function shortImageId(id: string): string {
  const colon = id.indexOf(':');
  return (colon >= 0 ? id.slice(colon + 1) : id).slice(0, 12);
}

// ---------------------------------------------------------------------------------------------------
// Expressions

type Expr =
  | { readonly op: 'dot'; readonly kind: Kind }
  | { readonly op: 'field'; readonly kind: Kind; readonly steps: readonly FieldStep[] }
  | { readonly op: 'literal'; readonly kind: Kind; readonly value: string | number }
  | { readonly op: 'call'; readonly kind: Kind; readonly fn: TemplateFunction; readonly args: readonly Expr[] };

type FieldStep = { readonly of: 'info'; readonly field: InfoField } | { readonly of: 'map'; readonly key: string };

function evaluate(expr: Expr, scope: TemplateScope): Value {
  switch (expr.op) {
    case 'dot':
      return scope;
    case 'literal':
      return expr.value;
    case 'field': {
      let value: Value = scope;
      for (const step of expr.steps) {
        if (step.of === 'info') value = step.field.get(scope);
        else value = lookup(asMap(value), step.key);
      }
      return value;
    }
    case 'call':
      return expr.fn.call(expr.args.map((a) => evaluate(a, scope)), expr.args.map((a) => a.kind));
  }
}

/** Own keys only: a label named `constructor` or `__proto__` is data, not the prototype's. */
function lookup(map: Readonly<Record<string, string>>, key: string): string | undefined {
  return Object.hasOwn(map, key) ? map[key] : undefined;
}

// Run-time coercions. Static checks guarantee the kind; these only narrow the TS type and map
// Go's "no value" / nil to the zero value.
function asString(v: Value): string {
  return typeof v === 'string' ? v : '';
}
function asInt(v: Value): number {
  return typeof v === 'number' ? v : 0;
}
function asList(v: Value): readonly string[] {
  return Array.isArray(v) ? (v as readonly string[]) : [];
}
function asMap(v: Value): Readonly<Record<string, string>> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof TemplateScope) ? (v as Readonly<Record<string, string>>) : {};
}

// ---------------------------------------------------------------------------------------------------
// Functions

interface TemplateFunction {
  /** The kinds each parameter accepts. */
  readonly params: readonly (readonly Kind[] | 'any')[];
  readonly result: Kind;
  /** Extra static check across arguments; returns an error message or undefined. */
  check?(args: readonly Expr[]): string | undefined;
  call(args: readonly Value[], kinds: readonly Kind[]): Value;
}

const STRING: readonly Kind[] = ['string'];
const INT: readonly Kind[] = ['int'];

const FUNCTIONS: ReadonlyMap<string, TemplateFunction> = new Map<string, TemplateFunction>([
  ['index', {
    params: [['map[string]string', '[]string'], ['string', 'int']],
    result: 'string',
    check: ([collection, key]) => {
      const wantKey: Kind = collection?.kind === '[]string' ? 'int' : 'string';
      if (key && key.kind !== wantKey) return `index of ${collection?.kind ?? ''} needs a key of type ${wantKey}, not ${key.kind}`;
      if (key?.op === 'literal' && typeof key.value === 'number' && key.value < 0) return `index out of range: ${key.value}`;
      return undefined;
    },
    call: ([collection, key], kinds) => kinds[0] === '[]string'
      ? (asList(collection)[asInt(key)] ?? '')
      : (lookup(asMap(collection), asString(key)) ?? ''),
  }],
  ['len', {
    params: [['string', '[]string', 'map[string]string']],
    result: 'int',
    call: ([v], kinds) => kinds[0] === 'string' ? Buffer.byteLength(asString(v)) // Go: bytes
      : kinds[0] === '[]string' ? asList(v).length : Object.keys(asMap(v)).length,
  }],
  ['json', { params: ['any'], result: 'string', call: ([v], kinds) => jsonValue(kinds[0] ?? 'string', v) }],
  ['split', {
    params: [STRING, STRING],
    result: '[]string',
    // Go's strings.Split with "" splits into characters; "".split(",") is [""] in both.
    call: ([s, sep]) => asString(sep) === '' ? Array.from(asString(s)) : asString(s).split(asString(sep)),
  }],
  ['join', { params: [['[]string'], STRING], result: 'string', call: ([list, sep]) => asList(list).join(asString(sep)) }],
  ['title', { params: [STRING], result: 'string', call: ([s]) => goTitle(asString(s)) }],
  ['lower', { params: [STRING], result: 'string', call: ([s]) => asString(s).toLowerCase() }],
  ['upper', { params: [STRING], result: 'string', call: ([s]) => asString(s).toUpperCase() }],
  ['pad', {
    params: [STRING, INT, INT],
    result: 'string',
    check: (args) => nonNegativeLiterals('pad', args),
    call: ([s, prefix, suffix]) => {
      const text = asString(s);
      return text === '' ? '' : ' '.repeat(asInt(prefix)) + text + ' '.repeat(asInt(suffix));
    },
  }],
  ['truncate', {
    params: [STRING, INT],
    result: 'string',
    check: (args) => nonNegativeLiterals('truncate', args),
    call: ([s, n]) => truncateUtf8(asString(s), asInt(n)),
  }],
]);

function nonNegativeLiterals(name: string, args: readonly Expr[]): string | undefined {
  for (const a of args) {
    if (a.op === 'literal' && typeof a.value === 'number' && a.value < 0) return `${name}: negative count ${a.value}`;
  }
  return undefined;
}

/** Go's strings.Title: upper-case the first letter of each word (words are split at non-alphanumerics). */
function goTitle(s: string): string {
  let out = '';
  let previous = ' ';
  for (const ch of s) {
    if (isWordSeparator(previous)) {
      const upper = ch.toUpperCase();
      out += [...upper].length === 1 ? upper : ch; // Go maps rune to rune: ß stays ß
    } else {
      out += ch;
    }
    previous = ch;
  }
  return out;
}

function isWordSeparator(ch: string): boolean {
  if (/^[0-9A-Za-z_]$/.test(ch)) return false;
  if (ch.charCodeAt(0) <= 0x7f) return true;
  if (/^[\p{L}\p{Nd}]$/u.test(ch)) return false;
  return /^\s$/u.test(ch);
}

/** At most `maxBytes` UTF-8 bytes of `s` (Go's source[:n]), without splitting a character. */
function truncateUtf8(s: string, maxBytes: number): string {
  if (Buffer.byteLength(s) <= maxBytes) return s;
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += ch.length;
  }
  return s.slice(0, end);
}

// ---------------------------------------------------------------------------------------------------
// Printing (Go's fmt %v) and JSON (Go's encoding/json with SetEscapeHTML(false))

function printValue(kind: Kind, v: Value): string {
  switch (kind) {
    case 'string':
      return v === undefined ? '<no value>' : asString(v);
    case 'int':
      return String(asInt(v));
    case '[]string':
      return `[${asList(v).join(' ')}]`;
    case 'map[string]string': {
      const map = asMap(v);
      return `map[${sortedKeys(map).map((k) => `${k}:${map[k] ?? ''}`).join(' ')}]`;
    }
    case 'time.Time':
      return goTimeString(asString(v));
    case '*logger.Info':
      return v instanceof TemplateScope ? `{${STRUCT_FIELDS.map((f) => printField(f, v)).join(' ')}}` : '<nil>';
  }
}

function printField(name: string, scope: TemplateScope): string {
  const field = INFO_FIELDS.get(name);
  return field ? printValue(field.kind, field.get(scope)) : '';
}

function jsonValue(kind: Kind, v: Value): string {
  switch (kind) {
    case 'string':
      return v === undefined ? 'null' : jsonString(asString(v));
    case 'int':
      return String(asInt(v));
    case '[]string':
      return v === null || v === undefined ? 'null' : `[${asList(v).map(jsonString).join(',')}]`;
    case 'map[string]string': {
      const map = asMap(v);
      return `{${sortedKeys(map).map((k) => `${jsonString(k)}:${jsonString(map[k] ?? '')}`).join(',')}}`;
    }
    case 'time.Time':
      return jsonString(asString(v) || GO_ZERO_TIME);
    case '*logger.Info': {
      if (!(v instanceof TemplateScope)) return 'null';
      const fields = STRUCT_FIELDS.map((f) => {
        const field = INFO_FIELDS.get(f);
        return `${jsonString(f)}:${field ? jsonValue(field.kind, field.get(v)) : 'null'}`;
      });
      return `{${fields.join(',')}}`;
    }
  }
}

/** JSON.stringify escapes like Go except for U+2028/U+2029, which Go always escapes. */
function jsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u2028\u2029]/g, (c) => (c === '\u2028' ? '\\u2028' : '\\u2029'));
}

/** Go sorts map keys when printing and marshalling. */
function sortedKeys(map: Readonly<Record<string, string>>): string[] {
  return Object.keys(map).sort();
}

const GO_ZERO_TIME = '0001-01-01T00:00:00Z';
const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Go's Time.String(): `2026-11-23 16:43:52.342094954 +0000 UTC` (fraction without trailing zeros). */
function goTimeString(rfc3339: string): string {
  const m = RFC3339.exec(rfc3339 || GO_ZERO_TIME);
  if (!m) return rfc3339;
  const [, date, time, frac, zulu, sign, oh, om] = m;
  const fraction = (frac ?? '').replace(/0+$/, '');
  const offset = zulu ? '+0000' : `${sign ?? '+'}${oh ?? '00'}${om ?? '00'}`;
  return `${date} ${time}${fraction ? `.${fraction}` : ''} ${offset} ${zulu ? 'UTC' : offset}`;
}

// ---------------------------------------------------------------------------------------------------
// Tokenizer

type Token =
  | { readonly type: 'field'; readonly pos: number; readonly path: readonly string[] }
  | { readonly type: 'identifier'; readonly pos: number; readonly name: string }
  | { readonly type: 'string'; readonly pos: number; readonly value: string }
  | { readonly type: 'number'; readonly pos: number; readonly value: number }
  | { readonly type: 'pipe' | 'open' | 'close'; readonly pos: number };

/** An action's tokens plus where the action ended and whether it trims the text after it. */
interface LexedAction {
  readonly tokens: Token[];
  readonly end: number;
  readonly trimRight: boolean;
  readonly comment: boolean;
}

const KEYWORDS = new Set(['if', 'else', 'end', 'range', 'with', 'define', 'template', 'block', 'break', 'continue', 'nil', 'true', 'false']);
const IDENTIFIER = /[A-Za-z_][A-Za-z0-9_]*/y;
const NUMBER = /[+-]?[0-9][0-9A-Za-z_.]*/y;

class TemplateSyntaxError extends Error {
  constructor(message: string, pos: number) {
    super(`${message} at position ${pos + 1}`);
  }
}

function isSpace(ch: string | undefined): boolean {
  return ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n';
}

/** Lexes one action starting right after its `{{` (and trim marker), up to and including `}}`. */
function lexAction(text: string, start: number, open: number): LexedAction {
  let pos = start;
  if (text.startsWith('/*', pos)) {
    const close = text.indexOf('*/', pos + 2);
    if (close < 0) throw new TemplateSyntaxError('unclosed comment', pos);
    pos = close + 2;
    const trimRight = text.startsWith(' -}}', pos);
    if (trimRight) pos += 2;
    if (!text.startsWith('}}', pos)) throw new TemplateSyntaxError('comment ends before closing delimiter', pos);
    return { tokens: [], end: pos + 2, trimRight, comment: true };
  }
  const tokens: Token[] = [];
  for (;;) {
    const spaceBefore = isSpace(text[pos]);
    while (isSpace(text[pos])) pos++;
    if (pos >= text.length) throw new TemplateSyntaxError('unclosed action', open);
    if (text.startsWith('}}', pos)) return { tokens, end: pos + 2, trimRight: false, comment: false };
    if (spaceBefore && text.startsWith('-}}', pos)) return { tokens, end: pos + 3, trimRight: true, comment: false };
    const ch = text[pos] as string;
    if (ch === '|') { tokens.push({ type: 'pipe', pos }); pos++; continue; }
    if (ch === '(') { tokens.push({ type: 'open', pos }); pos++; continue; }
    if (ch === ')') { tokens.push({ type: 'close', pos }); pos++; continue; }
    if (ch === '"' || ch === '`') {
      const { value, end } = ch === '"' ? lexQuoted(text, pos) : lexRaw(text, pos);
      tokens.push({ type: 'string', pos, value });
      pos = end;
      continue;
    }
    if (ch === '.') {
      const path: string[] = [];
      const at = pos;
      while (text[pos] === '.') {
        IDENTIFIER.lastIndex = pos + 1;
        const m = IDENTIFIER.exec(text);
        if (!m) break;
        path.push(m[0]);
        pos = IDENTIFIER.lastIndex;
      }
      if (path.length === 0) pos++; // the dot itself
      else if (text[pos] === '.') throw new TemplateSyntaxError(`bad field name after .${path.join('.')}`, pos);
      tokens.push({ type: 'field', pos: at, path });
      continue;
    }
    NUMBER.lastIndex = pos;
    const number = NUMBER.exec(text);
    if (number) {
      if (!/^[+-]?[0-9]+$/.test(number[0])) throw new TemplateSyntaxError(`number ${number[0]} is not supported (only decimal integers)`, pos);
      tokens.push({ type: 'number', pos, value: Number(number[0]) });
      pos = NUMBER.lastIndex;
      continue;
    }
    IDENTIFIER.lastIndex = pos;
    const identifier = IDENTIFIER.exec(text);
    if (identifier) {
      if (KEYWORDS.has(identifier[0])) throw new TemplateSyntaxError(`"${identifier[0]}" is not supported (shiplog templates have no control structures or constants)`, pos);
      tokens.push({ type: 'identifier', pos, name: identifier[0] });
      pos = IDENTIFIER.lastIndex;
      continue;
    }
    if (ch === '$') throw new TemplateSyntaxError('variables are not supported', pos);
    if (ch === "'") throw new TemplateSyntaxError('character literals are not supported', pos);
    throw new TemplateSyntaxError(`unexpected ${JSON.stringify(ch)} in action`, pos);
  }
}

function lexRaw(text: string, pos: number): { value: string; end: number } {
  const close = text.indexOf('`', pos + 1);
  if (close < 0) throw new TemplateSyntaxError('unterminated raw string', pos);
  return { value: text.slice(pos + 1, close).replace(/\r/g, ''), end: close + 1 };
}

const SIMPLE_ESCAPES: Readonly<Record<string, number>> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34 };

/** A Go double-quoted string (strconv.Unquote). \x and octal escapes are bytes, decoded as UTF-8. */
function lexQuoted(text: string, pos: number): { value: string; end: number } {
  const bytes: number[] = [];
  let i = pos + 1;
  for (;;) {
    const ch = text[i];
    if (ch === undefined || ch === '\n') throw new TemplateSyntaxError('unterminated quoted string', pos);
    if (ch === '"') return { value: Buffer.from(bytes).toString('utf8'), end: i + 1 };
    if (ch !== '\\') {
      const cp = text.codePointAt(i) ?? 0;
      bytes.push(...Buffer.from(String.fromCodePoint(cp), 'utf8'));
      i += cp > 0xffff ? 2 : 1;
      continue;
    }
    const esc = text[i + 1] ?? '';
    const simple = SIMPLE_ESCAPES[esc];
    if (simple !== undefined) { bytes.push(simple); i += 2; continue; }
    const hexDigits = esc === 'x' ? 2 : esc === 'u' ? 4 : esc === 'U' ? 8 : 0;
    if (hexDigits > 0) {
      const hex = text.slice(i + 2, i + 2 + hexDigits);
      if (!new RegExp(`^[0-9A-Fa-f]{${hexDigits}}$`).test(hex)) throw new TemplateSyntaxError(`invalid \\${esc} escape in string`, i);
      const n = parseInt(hex, 16);
      if (esc === 'x') bytes.push(n);
      else if (n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff)) throw new TemplateSyntaxError(`invalid code point \\${esc}${hex} in string`, i);
      else bytes.push(...Buffer.from(String.fromCodePoint(n), 'utf8'));
      i += 2 + hexDigits;
      continue;
    }
    const octal = text.slice(i + 1, i + 4);
    if (/^[0-7]{3}$/.test(octal) && parseInt(octal, 8) <= 255) { bytes.push(parseInt(octal, 8)); i += 4; continue; }
    throw new TemplateSyntaxError(`unknown escape \\${esc} in string`, i);
  }
}

// ---------------------------------------------------------------------------------------------------
// Parser

type Part = string | Expr;

function parseTemplate(text: string, available: ReadonlySet<string> | undefined): Part[] {
  const parts: Part[] = [];
  let pos = 0;
  let trimNext = false;
  while (pos < text.length) {
    const open = text.indexOf('{{', pos);
    let literal = text.slice(pos, open < 0 ? text.length : open);
    if (trimNext) literal = literal.replace(/^[ \t\r\n]+/, '');
    if (open < 0) {
      if (literal) parts.push(literal);
      break;
    }
    let start = open + 2;
    if (text[start] === '-' && isSpace(text[start + 1])) {
      literal = literal.replace(/[ \t\r\n]+$/, '');
      start += 2;
    }
    if (literal) parts.push(literal);
    const action = lexAction(text, start, open);
    if (!action.comment) parts.push(new ActionParser(action.tokens, action.end - 2, available).parseAction());
    trimNext = action.trimRight;
    pos = action.end;
  }
  return parts;
}

/** Recursive descent over one action's tokens: pipeline = command ('|' command)*, command = operand+. */
class ActionParser {
  private index = 0;

  constructor(private readonly tokens: readonly Token[], private readonly endPos: number, private readonly available: ReadonlySet<string> | undefined) {}

  parseAction(): Expr {
    const expr = this.parsePipeline();
    const extra = this.tokens[this.index];
    if (extra) throw new TemplateSyntaxError(`unexpected ${describe(extra)}`, extra.pos);
    return expr;
  }

  private parsePipeline(): Expr {
    let value: Expr | undefined;
    for (;;) {
      value = this.parseCommand(value);
      const next = this.tokens[this.index];
      if (next?.type !== 'pipe') return value;
      this.index++;
    }
  }

  /** One command; `piped` is the previous command's value, passed as the last argument. */
  private parseCommand(piped: Expr | undefined): Expr {
    const head = this.tokens[this.index];
    if (!head || head.type === 'pipe' || head.type === 'close') throw new TemplateSyntaxError('missing value for command', head?.pos ?? this.endPos);
    if (head.type === 'identifier') {
      this.index++;
      const args: Expr[] = [];
      while (this.atOperand()) args.push(this.parseOperand());
      if (piped) args.push(piped);
      return this.call(head.name, args, head.pos);
    }
    const value = this.parseOperand();
    if (this.atOperand() || piped) throw new TemplateSyntaxError(`can't give argument to non-function ${describe(head)}`, head.pos);
    return value;
  }

  private atOperand(): boolean {
    const t = this.tokens[this.index];
    return t !== undefined && t.type !== 'pipe' && t.type !== 'close';
  }

  private parseOperand(): Expr {
    const t = this.tokens[this.index++] as Token;
    switch (t.type) {
      case 'field':
        return this.field(t.path, t.pos);
      case 'string':
        return { op: 'literal', kind: 'string', value: t.value };
      case 'number':
        return { op: 'literal', kind: 'int', value: t.value };
      case 'identifier':
        // A function name as an argument is called with no arguments, as in Go.
        return this.call(t.name, [], t.pos);
      case 'open': {
        const inner = this.parsePipeline();
        const close = this.tokens[this.index];
        if (close?.type !== 'close') throw new TemplateSyntaxError('unclosed left paren', t.pos);
        this.index++;
        return inner;
      }
      default:
        throw new TemplateSyntaxError(`unexpected ${describe(t)}`, t.pos);
    }
  }

  private field(path: readonly string[], pos: number): Expr {
    if (path.length === 0) return { op: 'dot', kind: '*logger.Info' };
    const steps: FieldStep[] = [];
    let kind: Kind = '*logger.Info';
    for (const name of path) {
      if (kind === '*logger.Info') {
        const field = INFO_FIELDS.get(name);
        if (!field) throw new TemplateSyntaxError(`unknown field .${name} (known: ${[...INFO_FIELDS.keys()].filter((f) => this.isAvailable(f)).join(', ')})`, pos);
        if (!this.isAvailable(name)) throw new TemplateSyntaxError(`field .${name} is not available here (available: ${[...INFO_FIELDS.keys()].filter((f) => this.isAvailable(f)).join(', ')})`, pos);
        steps.push({ of: 'info', field });
        kind = field.kind;
      } else if (kind === 'map[string]string') {
        steps.push({ of: 'map', key: name });
        kind = 'string';
      } else {
        throw new TemplateSyntaxError(`can't evaluate field ${name} in type ${kind}`, pos);
      }
    }
    return { op: 'field', kind, steps };
  }

  private isAvailable(name: string): boolean {
    return this.available === undefined || this.available.has(name);
  }

  private call(name: string, args: Expr[], pos: number): Expr {
    const fn = FUNCTIONS.get(name);
    if (!fn) throw new TemplateSyntaxError(`function "${name}" not defined (available: ${[...FUNCTIONS.keys()].join(', ')})`, pos);
    if (args.length !== fn.params.length) throw new TemplateSyntaxError(`wrong number of args for ${name}: want ${fn.params.length} got ${args.length}`, pos);
    args.forEach((arg, i) => {
      const accepted = fn.params[i];
      if (accepted !== 'any' && accepted !== undefined && !accepted.includes(arg.kind)) {
        throw new TemplateSyntaxError(`wrong type for argument ${i + 1} of ${name}: want ${accepted.join(' or ')}, got ${arg.kind}`, pos);
      }
    });
    const problem = fn.check?.(args);
    if (problem) throw new TemplateSyntaxError(problem, pos);
    return { op: 'call', kind: fn.result, fn, args };
  }
}

function describe(t: Token): string {
  switch (t.type) {
    case 'field': return t.path.length === 0 ? '.' : `.${t.path.join('.')}`;
    case 'identifier': return t.name;
    case 'string': return JSON.stringify(t.value);
    case 'number': return String(t.value);
    case 'pipe': return '"|"';
    case 'open': return '"("';
    case 'close': return '")"';
  }
}
