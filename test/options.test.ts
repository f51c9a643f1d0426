import { describe, expect, it } from 'vitest';
import { OptionError } from '../src/option-table.js';
import { DOCKERD_OPTIONS, parseContainerOptions } from '../src/options.js';
import { parseBool, parseDuration, parseInteger, parseSize } from '../src/units.js';

describe('value parsers (Docker semantics)', () => {
  it('sizes are go-units FromHumanSize: decimal, optional i/b, fractions', () => {
    expect(parseSize('10m')).toBe(10_000_000);
    expect(parseSize('1k')).toBe(1000);
    expect(parseSize('10MiB')).toBe(10_000_000);
    expect(parseSize('1.5g')).toBe(1_500_000_000);
    expect(parseSize('512')).toBe(512);
    expect(parseSize('20 MB')).toBe(20_000_000);
    for (const bad of ['abc', '10q', '-1m', '', '1.2.3k']) expect(() => parseSize(bad)).toThrow(/is not a size/);
  });

  it('durations are Go durations', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('0')).toBe(0);
    for (const bad of ['5', 'soon', '5 s', '', 's']) expect(() => parseDuration(bad)).toThrow(/is not a duration/);
  });

  it('booleans and integers', () => {
    expect(parseBool('true')).toBe(true);
    expect(parseBool('0')).toBe(false);
    expect(() => parseBool('yes')).toThrow(/is not a boolean/);
    expect(parseInteger('5', 1)).toBe(5);
    expect(() => parseInteger('0', 1, 10)).toThrow(/out of range \(use 1 to 10\)/);
    expect(() => parseInteger('2.5', 1)).toThrow(/is not a whole number/);
  });
});

describe('parseContainerOptions', () => {
  it('applies documented defaults with no log-opts: file sink only', () => {
    const o = parseContainerOptions({}, {});
    expect(o.core['max-size']).toBe(20_000_000);
    expect(o.core['max-file']).toBe(5);
    expect(o.core.compress).toBe(true);
    expect(o.core.tag).toBe('{{.ID}}');
    expect(o.sinks.map((s) => s.definition.name)).toEqual(['file']);
  });

  it('rejects an unknown key, naming it and listing what is known', () => {
    const err = (() => { try { parseContainerOptions({ colour: 'blue' }, {}); } catch (e) { return e as Error; } return undefined; })();
    expect(err).toBeInstanceOf(OptionError);
    expect(err?.message).toMatch(/^unknown log-opt "colour" for shiplog \(known: sinks, tag, .*max-size.*es-url/);
  });

  it('accepts the keys dockerd consumes itself without interpreting them', () => {
    const config = Object.fromEntries(DOCKERD_OPTIONS.map((k) => [k, 'x']));
    expect(() => parseContainerOptions(config, {})).not.toThrow();
  });

  it('names the option, the value and what is allowed when a value is bad', () => {
    expect(() => parseContainerOptions({ 'max-size': 'abc' }, {})).toThrow('invalid log-opt "max-size": "abc" is not a size (use e.g. 10m, 512k, 1g)');
    expect(() => parseContainerOptions({ 'max-file': '0' }, {})).toThrow('invalid log-opt "max-file": "0" is out of range (use 1 to 1000)');
    expect(() => parseContainerOptions({ compress: 'maybe' }, {})).toThrow('invalid log-opt "compress": "maybe" is not a boolean (use true or false)');
    expect(() => parseContainerOptions({ 'partial-timeout': '5' }, {})).toThrow(/invalid log-opt "partial-timeout": "5" is not a duration/);
    expect(() => parseContainerOptions({ sinks: 'file,kafka' }, {})).toThrow(/invalid log-opt "sinks": "file,kafka" names an unknown sink "kafka"/);
  });

  it('precedence: built-in default < LOG_OPT_* environment < log-opt; an empty environment value is unset', () => {
    expect(parseContainerOptions({}, { LOG_OPT_MAX_SIZE: '5m' }).core['max-size']).toBe(5_000_000);
    expect(parseContainerOptions({ 'max-size': '7m' }, { LOG_OPT_MAX_SIZE: '5m' }).core['max-size']).toBe(7_000_000);
    expect(parseContainerOptions({}, { LOG_OPT_MAX_SIZE: '' }).core['max-size']).toBe(20_000_000);
    // A stray unprefixed variable in a shell is not a default.
    expect(parseContainerOptions({}, { TAG: 'x', MAX_SIZE: '1k' }).core.tag).toBe('{{.ID}}');
    expect(() => parseContainerOptions({}, { LOG_OPT_MAX_SIZE: 'huge' })).toThrow('invalid setting LOG_OPT_MAX_SIZE for "max-size": "huge" is not a size (use e.g. 10m, 512k, 1g)');
  });

  it('turns the Elasticsearch sink on by es-url (log-opt or environment) and off with sinks=none', () => {
    expect(parseContainerOptions({ 'es-url': 'http://127.0.0.1:9200' }, {}).sinks.map((s) => s.definition.name)).toEqual(['file', 'elasticsearch']);
    expect(parseContainerOptions({}, { LOG_OPT_ES_URL: 'http://127.0.0.1:9200' }).sinks.map((s) => s.definition.name)).toEqual(['file', 'elasticsearch']);
    expect(parseContainerOptions({ sinks: 'none' }, {}).sinks).toEqual([]);
    expect(parseContainerOptions({ sinks: 'elasticsearch', 'es-url': 'http://127.0.0.1:9200' }, {}).sinks.map((s) => s.definition.name)).toEqual(['elasticsearch']);
    expect(() => parseContainerOptions({ 'es-url': 'not-a-url' }, {})).toThrow(/invalid log-opt "es-url"/);
  });
});
