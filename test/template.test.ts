import { describe, expect, it } from 'vitest';
import { normalizeInfo, type ContainerInfo } from '../src/container-info.js';
import { compileTemplate } from '../src/pipeline/template.js';

/** The Info captured from dockerd 20.10 (protocol.md §2.2). */
const info: ContainerInfo = normalizeInfo({
  Config: { foo: 'bar', tag: '{{.Name}}/{{.ID}}' },
  ContainerID: 'e882a436c6b317a6ecf0bfdb77cdf7b2c3dc27dc1f80ad9b6159a3769e94cb10',
  ContainerName: '/demo-t1',
  ContainerEntrypoint: 'sh',
  ContainerArgs: ['-c', 'echo line1'],
  ContainerImageID: 'sha256:455044c7b7a3a94b04eba71c25a35d138afdafad3c1d65099e2721ae5d48e1ac',
  ContainerImageName: 'bb',
  ContainerCreated: '2026-11-23T16:43:52.342094950Z',
  ContainerEnv: ['MYENV=x', 'PATH=/bin'],
  ContainerLabels: { lab1: 'v1', 'com.example.team': 'Payments', constructor: 'c' },
  LogPath: '',
  DaemonName: 'docker',
});

function render(text: string, with_: ContainerInfo = info, hostname = 'host1'): string {
  return compileTemplate(text)(with_, hostname);
}

function compileError(text: string): string {
  try {
    compileTemplate(text);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`${text} compiled`);
}

describe('template: Docker tag fields (protocol.md §7.2)', () => {
  it.each([
    ['{{.ID}}', 'e882a436c6b3'],
    ['{{.FullID}}', 'e882a436c6b317a6ecf0bfdb77cdf7b2c3dc27dc1f80ad9b6159a3769e94cb10'],
    ['{{.Name}}', 'demo-t1'],
    ['{{.ImageID}}', '455044c7b7a3'],
    ['{{.ImageFullID}}', 'sha256:455044c7b7a3a94b04eba71c25a35d138afdafad3c1d65099e2721ae5d48e1ac'],
    ['{{.ImageName}}', 'bb'],
    ['{{.Command}}', 'sh -c echo line1'],
    ['{{.DaemonName}}', 'docker'],
    ['{{.Hostname}}', 'host1'],
  ])('%s renders %s', (text, expected) => {
    expect(render(text)).toBe(expected);
  });

  it('renders the captured tag {{.Name}}/{{.ID}} with text around it', () => {
    expect(render('app: {{.Name}}/{{.ID}}!')).toBe('app: demo-t1/e882a436c6b3!');
  });

  it('Command is the entrypoint alone when there are no args', () => {
    expect(render('{{.Command}}', { ...info, ContainerArgs: [] })).toBe('sh');
  });

  it('ImageID strips the algorithm even when the id is short', () => {
    expect(render('{{.ImageID}}', { ...info, ContainerImageID: 'sha256:abc' })).toBe('abc');
  });

  it('returns text without "{{" unchanged, braces and all', () => {
    expect(render('plain } tag {')).toBe('plain } tag {');
    expect(render('')).toBe('');
  });
});

describe('template: raw Info fields, printed as Go prints them', () => {
  it('prints strings, []string and maps (sorted keys)', () => {
    expect(render('{{.ContainerName}}')).toBe('/demo-t1');
    expect(render('{{.ContainerArgs}}')).toBe('[-c echo line1]');
    expect(render('{{.ContainerEnv}}')).toBe('[MYENV=x PATH=/bin]');
    expect(render('{{.ContainerLabels}}')).toBe('map[com.example.team:Payments constructor:c lab1:v1]');
    expect(render('{{.Config}}')).toBe('map[foo:bar tag:{{.Name}}/{{.ID}}]');
    expect(render('{{.LogPath}}|{{.ContainerEntrypoint}}|{{.ContainerImageName}}|{{.ContainerImageID}}'))
      .toBe('|sh|bb|sha256:455044c7b7a3a94b04eba71c25a35d138afdafad3c1d65099e2721ae5d48e1ac');
  });

  it('prints a nil ContainerEnv as [] and marshals it as null', () => {
    const noEnv = { ...info, ContainerEnv: null };
    expect(render('{{.ContainerEnv}}', noEnv)).toBe('[]');
    expect(render('{{json .ContainerEnv}}', noEnv)).toBe('null');
  });

  it('prints ContainerCreated as Go time.String() and marshals it as RFC 3339', () => {
    expect(render('{{.ContainerCreated}}')).toBe('2026-11-23 16:43:52.34209495 +0000 UTC');
    expect(render('{{json .ContainerCreated}}')).toBe('"2026-11-23T16:43:52.342094950Z"');
  });

  it('reaches map keys with .Map.key and index; a missing key is <no value> / ""', () => {
    expect(render('{{.ContainerLabels.lab1}}')).toBe('v1');
    expect(render('{{.Config.foo}}')).toBe('bar');
    expect(render('{{index .ContainerLabels "com.example.team"}}')).toBe('Payments');
    expect(render('{{.ContainerLabels.missing}}')).toBe('<no value>');
    expect(render('[{{index .ContainerLabels "missing"}}]')).toBe('[]');
  });

  it('treats a label named like an Object.prototype member as data', () => {
    expect(render('{{index .ContainerLabels "constructor"}}')).toBe('c');
    expect(render('[{{index .ContainerLabels "toString"}}]')).toBe('[]');
    expect(render('{{.Config.hasOwnProperty}}')).toBe('<no value>');
  });

  it('indexes []string by integer; out of range is ""', () => {
    expect(render('{{index .ContainerArgs 1}}')).toBe('echo line1');
    expect(render('[{{index .ContainerArgs 9}}]')).toBe('[]');
    expect(render('[{{index .ContainerEnv 0}}]', { ...info, ContainerEnv: null })).toBe('[]');
  });

  it('marshals the whole Info with json . in struct order', () => {
    const json = render('{{json .}}');
    const parsed = JSON.parse(json) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['Config', 'ContainerID', 'ContainerName', 'ContainerEntrypoint', 'ContainerArgs', 'ContainerImageID',
      'ContainerImageName', 'ContainerCreated', 'ContainerEnv', 'ContainerLabels', 'LogPath', 'DaemonName']);
    expect(parsed.ContainerLabels).toEqual({ 'com.example.team': 'Payments', constructor: 'c', lab1: 'v1' });
  });

  it('prints the dot as Go prints the struct', () => {
    const small = normalizeInfo({ ContainerID: 'abc', ContainerName: '/n', ContainerCreated: '2026-01-02T03:04:05Z' });
    expect(render('{{.}}', small)).toBe('{map[] abc /n  []   2026-01-02 03:04:05 +0000 UTC [] map[]  docker}');
  });
});

describe('template: functions (moby templates.go + index/len)', () => {
  it('json: no HTML escaping, no trailing newline, sorted map keys, U+2028 escaped', () => {
    expect(render('{{json .Name}}')).toBe('"demo-t1"');
    expect(render('{{json "<a&b>"}}')).toBe('"<a&b>"');
    expect(render('{{json "line\\u2028sep"}}')).toBe('"line\\u2028sep"');
    expect(render('{{json .ContainerLabels}}')).toBe('{"com.example.team":"Payments","constructor":"c","lab1":"v1"}');
    expect(render('{{json .ContainerArgs}}')).toBe('["-c","echo line1"]');
    expect(render('{{json 42}}')).toBe('42');
    expect(render('{{json .Config.missing}}')).toBe('null');
  });

  it('split and join', () => {
    expect(render('{{split .Name "-"}}')).toBe('[demo t1]');
    expect(render('{{join (split .Name "-") "_"}}')).toBe('demo_t1');
    expect(render('{{join .ContainerArgs ","}}')).toBe('-c,echo line1');
    expect(render('{{split "héllo" ""}}')).toBe('[h é l l o]');
    expect(render('{{json (split "" ",")}}')).toBe('[""]');
    expect(render('{{join .ContainerEnv ","}}', { ...info, ContainerEnv: null })).toBe('');
  });

  it('title, lower, upper', () => {
    expect(render('{{title "hello wOrld-foo_bar 3am"}}')).toBe('Hello WOrld-Foo_bar 3am');
    expect(render('{{lower "MiXeD"}}')).toBe('mixed');
    expect(render('{{upper .Name}}')).toBe('DEMO-T1');
  });

  it('pad adds spaces only to a non-empty string', () => {
    expect(render('[{{pad .Name 2 1}}]')).toBe('[  demo-t1 ]');
    expect(render('[{{pad "" 2 1}}]')).toBe('[]');
    expect(render('[{{pad .ContainerLabels.missing 2 1}}]')).toBe('[]');
  });

  it('truncate keeps at most n bytes and never splits a character', () => {
    expect(render('{{truncate .Name 4}}')).toBe('demo');
    expect(render('{{truncate .Name 100}}')).toBe('demo-t1');
    expect(render('{{truncate .Name 0}}')).toBe('');
    expect(render('{{truncate "héllo" 2}}')).toBe('h');
    expect(render('{{truncate "héllo" 3}}')).toBe('hé');
  });

  it('len of string (bytes), []string and map', () => {
    expect(render('{{len .Name}} {{len .ContainerArgs}} {{len .ContainerLabels}} {{len "é"}}')).toBe('7 2 3 2');
  });
});

describe('template: pipelines, literals, trim markers, comments', () => {
  it('passes each command value as the last argument of the next', () => {
    expect(render('{{.Name | upper}}')).toBe('DEMO-T1');
    expect(render('{{.Name | upper | lower | title}}')).toBe('Demo-T1');
    expect(render('{{index .ContainerLabels "com.example.team" | lower}}')).toBe('payments');
    expect(render('{{"a-b" | split "a-b-c"}}')).toBe('[ -c]');
    expect(render('{{"," | join .ContainerArgs}}')).toBe('-c,echo line1');
    expect(render('{{.ContainerArgs | len}}')).toBe('2');
  });

  it('parenthesised pipelines are operands', () => {
    expect(render('{{truncate (upper .Name) 4}}')).toBe('DEMO');
    expect(render('{{len (truncate "abcdef" 3)}}')).toBe('3');
  });

  it('string literals with Go escapes and raw strings', () => {
    expect(render('{{"a\\tb\\n\\"q\\"\\\\"}}')).toBe('a\tb\n"q"\\');
    expect(render('{{"\\x41\\101\\u00e9\\U0001F600"}}')).toBe('AAé😀');
    expect(render('{{"\\xc3\\xa9"}}')).toBe('é');
    expect(render('{{`raw \\n {{ }}`}}')).toBe('raw \\n {{ }}');
    expect(render('{{"}}"}}')).toBe('}}');
  });

  it('integer literals print as themselves', () => {
    expect(render('{{42}}|{{-7}}|{{+3}}')).toBe('42|-7|3');
  });

  it('trim markers remove whitespace around the action', () => {
    expect(render('a  \n {{- .Name -}} \t\n b')).toBe('ademo-t1b');
    expect(render('a {{- .Name}} b')).toBe('ademo-t1 b');
    expect(render('a {{.Name -}} b')).toBe('a demo-t1b');
  });

  it('comments render nothing', () => {
    expect(render('a{{/* a comment with }} */}}b')).toBe('ab');
    expect(render('a {{- /* c */ -}} b')).toBe('ab');
  });

  it('renders many times from one compilation, per container', () => {
    const tag = compileTemplate('{{.Name}}@{{.Hostname}}');
    expect(tag(info, 'h1')).toBe('demo-t1@h1');
    expect(tag({ ...info, ContainerName: '/other' }, 'h2')).toBe('other@h2');
  });
});

describe('template: compile errors', () => {
  it.each([
    ['{{.Foo}}', /unknown field \.Foo \(known: ID, FullID, .*\) at position 3/],
    ['{{.id}}', /unknown field \.id/],
    ['{{nope .Name}}', /function "nope" not defined \(available: index, len, json, .*\) at position 3/],
    ['{{.Name', /unclosed action at position 1/],
    ['x {{', /unclosed action at position 3/],
    ['{{}}', /missing value for command/],
    ['{{.Name |}}', /missing value for command/],
    ['{{"abc}}', /unterminated quoted string/],
    ['{{`abc}}', /unterminated raw string/],
    ['{{"\\q"}}', /unknown escape \\q/],
    ['{{"\\x4"}}', /invalid \\x escape/],
    ['{{upper}}', /wrong number of args for upper: want 1 got 0/],
    ['{{upper "a" "b"}}', /wrong number of args for upper: want 1 got 2/],
    ['{{.Name | truncate 5}}', /wrong type for argument 1 of truncate: want string, got int/],
    ['{{join .Name ","}}', /wrong type for argument 1 of join: want \[\]string, got string/],
    ['{{upper .ContainerArgs}}', /want string, got \[\]string/],
    ['{{index .ContainerLabels 1}}', /index of map\[string\]string needs a key of type string, not int/],
    ['{{index .ContainerArgs "a"}}', /index of \[\]string needs a key of type int, not string/],
    ['{{index .ContainerArgs -1}}', /index out of range: -1/],
    ['{{index .Name 0}}', /wrong type for argument 1 of index/],
    ['{{truncate .Name -1}}', /truncate: negative count -1/],
    ['{{pad .Name 1 -2}}', /pad: negative count -2/],
    ['{{.Name.Foo}}', /can't evaluate field Foo in type string/],
    ['{{.Name "x"}}', /can't give argument to non-function \.Name/],
    ['{{.Name | .ID}}', /can't give argument to non-function \.ID/],
    ['{{if .Name}}x{{end}}', /"if" is not supported/],
    ['{{range .ContainerArgs}}{{.}}{{end}}', /"range" is not supported/],
    ['{{$x := .Name}}', /variables are not supported/],
    ['{{printf "%s" .Name}}', /function "printf" not defined/],
    ['{{1.5}}', /number 1\.5 is not supported/],
    ['{{0x10}}', /number 0x10 is not supported/],
    ["{{'a'}}", /character literals are not supported/],
    ['{{(upper .Name}}', /unclosed left paren/],
    ['{{.Name)}}', /unexpected "\)"/],
    ['{{/* open', /unclosed comment/],
    ['{{/* c */ x}}', /comment ends before closing delimiter/],
    ['{{.Name.}}', /bad field name/],
    ['{{ # }}', /unexpected "#" in action/],
  ])('%s → %s', (text, message) => {
    expect(compileError(text)).toMatch(message);
  });

  it('restricts fields to availableFields with a message listing them', () => {
    const render = compileTemplate('/x/{{.Name}}', { availableFields: ['Name', 'ID'] });
    expect(render(info, 'h')).toBe('/x/demo-t1');
    expect(() => compileTemplate('{{.Command}}', { availableFields: ['Name', 'ID'] }))
      .toThrow('field .Command is not available here (available: ID, Name) at position 3');
  });

  it('a template that compiles never throws at render time, even on an empty Info', () => {
    const empty = normalizeInfo({});
    const text = '{{.ID}}{{.Name}}{{.ImageID}}{{.Command}}{{index .ContainerArgs 3}}{{index .ContainerLabels "x"}}{{.Config.x}}'
      + '{{json .}}{{.}}{{json .ContainerCreated}}{{.ContainerCreated}}{{truncate .Config.y 2}}{{join .ContainerEnv ","}}';
    expect(() => compileTemplate(text)(empty, '')).not.toThrow();
    expect(render('{{.ContainerCreated}}', empty)).toBe('0001-01-01 00:00:00 +0000 UTC');
  });
});
