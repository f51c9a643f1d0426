import { describe, expect, it } from 'vitest';
import { normalizeInfo, type ContainerInfo } from '../src/container-info.js';
import { OptionError } from '../src/option-table.js';
import { buildContainerMeta, type MetadataOptions } from '../src/pipeline/metadata.js';

const info: ContainerInfo = normalizeInfo({
  ContainerID: 'e882a436c6b317a6ecf0bfdb77cdf7b2c3dc27dc1f80ad9b6159a3769e94cb10',
  ContainerName: '/demo-t1',
  ContainerImageID: 'sha256:455044c7b7a3a94b04eba71c25a35d138afdafad3c1d65099e2721ae5d48e1ac',
  ContainerImageName: 'bb',
  ContainerEnv: ['MYENV=x', 'EMPTY=', 'EQ=a=b', 'NOEQ', 'DUP=1', 'DUP=2', 'APP_MODE=prod', 'APP_REGION=eu'],
  // JSON.parse, as the labels arrive from dockerd: "__proto__" becomes an own key, not the prototype.
  ContainerLabels: JSON.parse('{"lab1":"v1","com.example.team":"payments","com.example.tier":"web"," lab1":"spaced","__proto__":"p"}') as Record<string, string>,
});

const none: MetadataOptions = { tag: '{{.ID}}', labels: '', labelsRegex: '', env: '', envRegex: '' };

function attrs(opts: Partial<MetadataOptions>, with_: ContainerInfo = info): Readonly<Record<string, string>> {
  return buildContainerMeta(with_, { ...none, ...opts }, 'host1').attrs;
}

function optionError(opts: Partial<MetadataOptions>, with_: ContainerInfo = info): OptionError {
  try {
    buildContainerMeta(with_, { ...none, ...opts }, 'host1');
  } catch (err) {
    if (err instanceof OptionError) return err;
    throw err;
  }
  throw new Error('no error');
}

describe('buildContainerMeta', () => {
  it('fills id, name without /, image, tag, all labels and hostname', () => {
    const meta = buildContainerMeta(info, { ...none, tag: '{{.Name}}/{{.ID}}' }, 'host1');
    expect(meta).toEqual({
      id: info.ContainerID, name: 'demo-t1', imageName: 'bb', imageId: info.ContainerImageID,
      tag: 'demo-t1/e882a436c6b3', attrs: {}, labels: { ...info.ContainerLabels }, hostname: 'host1',
    });
    expect(Object.hasOwn(meta.labels, '__proto__')).toBe(true);
  });

  it('renders the default tag {{.ID}} and treats an empty tag as the default, as Docker does', () => {
    expect(buildContainerMeta(info, none, 'h').tag).toBe('e882a436c6b3');
    expect(buildContainerMeta(info, { ...none, tag: '' }, 'h').tag).toBe('e882a436c6b3');
    expect(buildContainerMeta(info, { ...none, tag: 'static' }, 'h').tag).toBe('static');
    expect(buildContainerMeta(info, { ...none, tag: '{{.Hostname}}' }, 'daemon-host').tag).toBe('daemon-host');
  });

  it('reports a tag template error as an OptionError naming "tag"', () => {
    const err = optionError({ tag: '{{.Nope}}' });
    expect(err.message).toMatch(/^invalid log-opt "tag": "\{\{\.Nope\}\}" is not a valid template: unknown field \.Nope .* at position 3$/);
  });
});

describe('extra attributes (Docker ExtraAttributes, protocol.md §7.1)', () => {
  it('labels: comma-separated names, missing ignored, no trimming', () => {
    expect(attrs({ labels: 'lab1,missing,com.example.team' })).toEqual({ lab1: 'v1', 'com.example.team': 'payments' });
    expect(attrs({ labels: 'lab1, com.example.team' })).toEqual({ lab1: 'v1' });
    expect(attrs({ labels: ' lab1' })).toEqual({ ' lab1': 'spaced' });
  });

  it('labels: names that are Object.prototype members are only matched as real labels', () => {
    expect(attrs({ labels: 'constructor,toString' })).toEqual({});
    const result = attrs({ labels: 'constructor,__proto__' });
    expect(Object.keys(result)).toEqual(['__proto__']);
    expect(result['__proto__']).toBe('p');
    expect(Object.hasOwn(result, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
  });

  it('labels-regex: unanchored match over label keys', () => {
    expect(attrs({ labelsRegex: 'example' })).toEqual({ 'com.example.team': 'payments', 'com.example.tier': 'web' });
    expect(attrs({ labelsRegex: '^lab' })).toEqual({ lab1: 'v1' });
    expect(attrs({ labelsRegex: 'team$|^lab1$' })).toEqual({ lab1: 'v1', 'com.example.team': 'payments' });
  });

  it('labels-regex: RE2 flag group (?i) works', () => {
    expect(attrs({ labelsRegex: '(?i)^LAB' })).toEqual({ lab1: 'v1' });
  });

  it('env: names split at the first "=", entries without "=" skipped, later duplicate wins', () => {
    expect(attrs({ env: 'MYENV,EMPTY,EQ,NOEQ,DUP,MISSING' })).toEqual({ MYENV: 'x', EMPTY: '', EQ: 'a=b', DUP: '2' });
  });

  it('env-regex: unanchored match over variable names', () => {
    expect(attrs({ envRegex: '^APP_' })).toEqual({ APP_MODE: 'prod', APP_REGION: 'eu' });
    expect(attrs({ envRegex: 'REGION' })).toEqual({ APP_REGION: 'eu' });
  });

  it('null ContainerEnv: env and env-regex add nothing, labels still apply', () => {
    const noEnv = { ...info, ContainerEnv: null };
    expect(attrs({ env: 'MYENV', envRegex: '.', labels: 'lab1' }, noEnv)).toEqual({ lab1: 'v1' });
  });

  it('collisions: order labels, labels-regex, env, env-regex; later wins', () => {
    const clash = normalizeInfo({
      ContainerLabels: { shared: 'from-label', other: 'label' },
      ContainerEnv: ['shared=from-env', 'other=env'],
    });
    expect(attrs({ labels: 'shared' }, clash)).toEqual({ shared: 'from-label' });
    expect(attrs({ labels: 'shared', env: 'shared' }, clash)).toEqual({ shared: 'from-env' });
    expect(attrs({ env: 'shared', labelsRegex: 'shared' }, clash)).toEqual({ shared: 'from-env' });
    expect(attrs({ labels: 'shared,other', envRegex: '^o' }, clash)).toEqual({ shared: 'from-label', other: 'env' });
    // A key keeps the position of its first insertion; only its value changes.
    expect(Object.keys(attrs({ labels: 'shared,other', envRegex: 'shared' }, clash))).toEqual(['shared', 'other']);
  });

  it('all four empty: no attrs', () => {
    expect(attrs({})).toEqual({});
  });
});

describe('option errors', () => {
  it('invalid labels-regex names the option and the pattern', () => {
    const err = optionError({ labelsRegex: '(' });
    expect(err).toBeInstanceOf(OptionError);
    expect(err.message).toBe('invalid log-opt "labels-regex": "(" is not a valid regular expression: Unterminated group');
  });

  it('invalid env-regex names the option, even when the container has no env', () => {
    expect(optionError({ envRegex: '[a-' }).message).toMatch(/^invalid log-opt "env-regex": "\[a-" is not a valid regular expression: /);
    expect(optionError({ envRegex: '*' }, { ...info, ContainerEnv: null }).message)
      .toBe('invalid log-opt "env-regex": "*" is not a valid regular expression: Nothing to repeat');
  });
});
