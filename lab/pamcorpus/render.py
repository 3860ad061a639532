#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render every tree of the PAM corpus (tests/corpus/manifest.yml) into OUT.

    render.py --out DIR [--only NAME ...] [--force]

Each tree becomes ``OUT/<name>/`` laid out like a root file system (what PAM
and the editor read: etc/pam.d, usr/lib/pam.d, etc/security, etc/login.defs,
etc/authselect, the generators' state), with a ``SOURCE.md`` saying where
every file came from.  ``OUT/index.json`` lists the trees with their
resolved manifest entries.

How a tree is made (``recipe`` in the manifest):

* a **generator recipe** (``chroot: bookworm|trixie|sid``): the cached chroot
  of lab/pamcorpus/chroot.sh is put back to its pristine state (etc/,
  var/lib/pam, var/cache/debconf, var/lib/authselect), the recipe's
  ``prepare`` and the tree's ``run`` commands run in it with chroot(8), then
  the recipe's ``take`` paths are copied out (symlinks kept) and its
  ``overlay`` files are copied over them;
* ``handwritten``: ``tests/corpus/trees/<name>/`` is copied (it holds its own
  SOURCE.md);
* ``site``: the rendered tree ``base`` is copied, then
  ``tests/corpus/sites/<name>/`` is copied over it (its SOURCE.md says what
  the site changed and where that comes from).

Nothing is rendered when ``OUT/.stamp`` matches the inputs (this file, the
manifest, the chroots' stamps, every committed tree and overlay file).
Needs root (chroot).  Every command runs under a timeout; a failing command
fails the whole render with its output.
"""

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(REPO, 'tests', 'corpus')
MANIFEST = os.path.join(CORPUS, 'manifest.yml')
CHROOT_SH = os.path.join(HERE, 'chroot.sh')
MUTABLE = ('etc', 'var/lib/pam', 'var/cache/debconf', 'var/lib/authselect')
CHROOT_ENV = ['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'DEBIAN_FRONTEND=noninteractive',
              'DEBCONF_NONINTERACTIVE_SEEN=true', 'LANG=C.UTF-8', 'HOME=/root']
COMMAND_TIMEOUT = 300


class RenderError(Exception):
    pass


def log(msg):
    sys.stderr.write('pamcorpus/render.py: %s\n' % msg)


def load_manifest(path=MANIFEST):
    with open(path) as handle:
        data = yaml.safe_load(handle)
    recipes = data.get('recipes') or {}
    trees = []
    seen = set()
    for entry in data['trees']:
        name = entry['name']
        if name in seen:
            raise RenderError('manifest: tree %s listed twice' % name)
        seen.add(name)
        recipe = entry.get('recipe')
        if recipe not in recipes and recipe not in ('handwritten', 'site'):
            raise RenderError('manifest: tree %s has unknown recipe %r' % (name, recipe))
        trees.append(entry)
    return data, recipes, trees


# --------------------------------------------------------------------------
# Chroots


def chroot_dir(suite, cache=None):
    env = dict(os.environ)
    if cache:
        env['PAMCORPUS_CACHE'] = cache
    proc = subprocess.run(['bash', CHROOT_SH, suite], stdout=subprocess.PIPE, env=env, timeout=7200,
                          universal_newlines=True)
    if proc.returncode != 0:
        raise RenderError('lab/pamcorpus/chroot.sh %s failed (exit %d); see the lines above'
                          % (suite, proc.returncode))
    path = proc.stdout.strip().splitlines()[-1]
    if not os.path.isfile(os.path.join(path, 'stamp')):
        raise RenderError('chroot.sh %s printed %r, which has no stamp' % (suite, path))
    return path


def versions(cdir):
    out = {}
    with open(os.path.join(cdir, 'versions.txt')) as handle:
        for line in handle:
            words = line.split()
            if len(words) == 2:
                out[words[0]] = words[1]
    return out


def reset(cdir):
    root = os.path.join(cdir, 'root')
    for rel in MUTABLE:
        target = os.path.join(root, rel)
        if os.path.islink(target) or os.path.isfile(target):
            os.unlink(target)
        elif os.path.isdir(target):
            shutil.rmtree(target)
        pristine = os.path.join(cdir, 'pristine', rel)
        if os.path.isdir(pristine):
            subprocess.run(['cp', '-a', pristine, target], check=True)


def run_in(cdir, command):
    root = os.path.join(cdir, 'root')
    proc = subprocess.run(['chroot', root] + CHROOT_ENV + ['sh', '-ec', command], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise RenderError('in %s: `%s` failed (exit %d):\n%s' % (root, command, proc.returncode, proc.stdout))
    return proc.stdout


# --------------------------------------------------------------------------
# Copying


def copy_entry(src, dst):
    """Copy a file, symlink or directory (symlinks kept as symlinks)."""
    parent = os.path.dirname(dst)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    if os.path.islink(src):
        if os.path.lexists(dst):
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            else:
                os.unlink(dst)
        os.symlink(os.readlink(src), dst)
    elif os.path.isdir(src):
        if not os.path.isdir(dst):
            os.makedirs(dst)
        for name in sorted(os.listdir(src)):
            copy_entry(os.path.join(src, name), os.path.join(dst, name))
    else:
        if os.path.lexists(dst):
            os.unlink(dst)
        shutil.copy2(src, dst)


def copy_tree_into(src_dir, dst_dir, skip=('SOURCE.md',)):
    for name in sorted(os.listdir(src_dir)):
        if name in skip:
            continue
        copy_entry(os.path.join(src_dir, name), os.path.join(dst_dir, name))


# --------------------------------------------------------------------------
# Trees


def render_generated(entry, recipe, cdir, dest):
    reset(cdir)
    root = os.path.join(cdir, 'root')
    outputs = []
    for command in list(recipe.get('prepare') or []) + list(entry['run']):
        outputs.append((command, run_in(cdir, command)))
    os.makedirs(dest)
    taken = []
    for rel in recipe['take'] + list(entry.get('take') or []):
        src = os.path.join(root, rel)
        if not os.path.lexists(src):
            if rel in (recipe.get('optional') or []):
                continue
            raise RenderError('%s: %s is not in the chroot after the commands' % (entry['name'], rel))
        copy_entry(src, os.path.join(dest, rel))
        taken.append(rel)
    overlaid = []
    for item in recipe.get('overlay') or []:
        for name in item['files']:
            copy_entry(os.path.join(REPO, item['from'], name), os.path.join(dest, item['to'], name))
            overlaid.append('%s/%s -> %s/%s' % (item['from'], name, item['to'], name))
    ver = versions(cdir)
    lines = ['# %s' % entry['name'], '',
             'Produced at build time by `lab/pamcorpus/render.py` (not committed): the real tools ran in',
             'a Debian `%s` chroot built by `lab/pamcorpus/chroot.sh` (debootstrap --variant=minbase' % recipe['chroot'],
             'from the Debian mirror, then apt-get install).', '',
             '- tool: %s' % recipe['tool'],
             '- packages: %s' % ', '.join('%s %s' % (p, ver.get(p, '(not installed)')) for p in recipe['packages']),
             '- commands, in order, as root in the chroot:']
    lines += ['  - `%s`' % c for c, _out in outputs]
    lines += ['- copied out of the chroot (symlinks kept): %s' % ', '.join('`%s`' % t for t in taken)]
    if overlaid:
        lines += ['- hand-written files laid over it (see their own provenance):']
        lines += ['  - `%s`' % o for o in overlaid]
    if recipe.get('note'):
        lines += ['', recipe['note'].strip()]
    if entry.get('note'):
        lines += ['', entry['note'].strip()]
    with open(os.path.join(dest, 'SOURCE.md'), 'w') as handle:
        handle.write('\n'.join(lines) + '\n')


def render_handwritten(entry, dest):
    src = os.path.join(CORPUS, 'trees', entry['name'])
    if not os.path.isfile(os.path.join(src, 'SOURCE.md')):
        raise RenderError('%s: hand-written tree without SOURCE.md' % entry['name'])
    os.makedirs(dest)
    copy_tree_into(src, dest, skip=())


def render_site(entry, out, dest):
    base = os.path.join(out, entry['base'])
    if not os.path.isdir(base):
        raise RenderError('%s: base tree %s was not rendered (list it earlier)' % (entry['name'], entry['base']))
    src = os.path.join(CORPUS, 'sites', entry['name'])
    if not os.path.isfile(os.path.join(src, 'SOURCE.md')):
        raise RenderError('%s: site overlay without SOURCE.md' % entry['name'])
    os.makedirs(dest)
    copy_tree_into(base, dest)
    for rel in entry.get('remove') or []:
        path = os.path.join(dest, rel)
        if not os.path.lexists(path):
            raise RenderError('%s: remove %s: not in the base tree' % (entry['name'], rel))
        os.unlink(path)
    copy_tree_into(src, dest)
    for edit in entry.get('edits') or []:
        apply_edit(entry['name'], dest, edit)
    with open(os.path.join(src, 'SOURCE.md')) as handle:
        own = handle.read()
    with open(os.path.join(base, 'SOURCE.md')) as handle:
        base_source = handle.read()
    with open(os.path.join(dest, 'SOURCE.md'), 'w') as handle:
        handle.write(own.rstrip('\n') + '\n\n## Base tree: %s\n\n' % entry['base'])
        handle.write(base_source.split('\n', 2)[2] if base_source.startswith('# ') else base_source)


def apply_edit(name, dest, edit):
    """One site change to a file of the base tree: ``lines`` inserted
    before/after the one line matching ``insert_before``/``insert_after``
    (a regex that must match exactly one line), or appended (``append``).
    A symlink is written through (as an editor on the node would)."""
    path = os.path.join(dest, edit['file'])
    real = os.path.realpath(path)
    if not real.startswith(os.path.realpath(dest) + os.sep):
        # absolute link (authselect): resolve it inside the tree
        target = os.readlink(path)
        real = os.path.join(dest, target.lstrip('/'))
    with open(real) as handle:
        lines = handle.read().splitlines(True)
    new = [line + '\n' for line in edit['lines']]
    if 'append' in edit:
        if lines and not lines[-1].endswith('\n'):
            lines[-1] += '\n'
        lines += new
    else:
        key = 'insert_before' if 'insert_before' in edit else 'insert_after'
        pattern = re.compile(edit[key])
        hits = [i for i, line in enumerate(lines) if pattern.search(line)]
        if len(hits) != 1:
            raise RenderError('%s: %s %r matches %d lines of %s' % (name, key, edit[key], len(hits), edit['file']))
        at = hits[0] if key == 'insert_before' else hits[0] + 1
        lines[at:at] = new
    with open(real, 'w') as handle:
        handle.write(''.join(lines))


# --------------------------------------------------------------------------
# Inputs hash


def _hash_path(digest, path):
    if os.path.islink(path):
        digest.update(('L %s %s\n' % (path, os.readlink(path))).encode())
    elif os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            _hash_path(digest, os.path.join(path, name))
    elif os.path.isfile(path):
        digest.update(('F %s\n' % path).encode())
        with open(path, 'rb') as handle:
            digest.update(handle.read())


def inputs_hash(recipes, trees, cdirs):
    digest = hashlib.sha256()
    for path in (os.path.abspath(__file__), MANIFEST, os.path.join(CORPUS, 'trees'),
                 os.path.join(CORPUS, 'sites')):
        _hash_path(digest, path)
    for recipe in recipes.values():
        for item in recipe.get('overlay') or []:
            for name in item['files']:
                _hash_path(digest, os.path.join(REPO, item['from'], name))
    for suite in sorted(cdirs):
        _hash_path(digest, os.path.join(cdirs[suite], 'stamp'))
        digest.update(cdirs[suite].encode())
    return digest.hexdigest()


def render(out, only=None, force=False, cache=None):
    _data, recipes, trees = load_manifest()
    wanted = set(only or [t['name'] for t in trees])
    # sites need their base
    changed = True
    while changed:
        changed = False
        for entry in trees:
            if entry['name'] in wanted and entry.get('base') and entry['base'] not in wanted:
                wanted.add(entry['base'])
                changed = True
    todo = [t for t in trees if t['name'] in wanted]
    suites = sorted(set(recipes[t['recipe']]['chroot'] for t in todo if t['recipe'] in recipes))
    cdirs = dict((s, chroot_dir(s, cache)) for s in suites)
    # one render at a time: the chroots' etc/ is reset and changed per tree
    lock_dir = cache or os.environ.get('PAMCORPUS_CACHE') or '/var/cache/slurm-adopt-corpus'
    lock = open(os.path.join(lock_dir, '.render.lock'), 'w')
    fcntl.flock(lock, fcntl.LOCK_EX)
    stamp = inputs_hash(recipes, trees, cdirs) + ' ' + ','.join(sorted(wanted))
    stamp_file = os.path.join(out, '.stamp')
    if not force and os.path.isfile(stamp_file):
        with open(stamp_file) as handle:
            if handle.read().strip() == stamp:
                log('up to date: %s' % out)
                return out
    tmp = out + '.new'
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    index = {}
    for entry in todo:
        dest = os.path.join(tmp, entry['name'])
        if entry['recipe'] == 'handwritten':
            render_handwritten(entry, dest)
        elif entry['recipe'] == 'site':
            render_site(entry, tmp, dest)
        else:
            recipe = recipes[entry['recipe']]
            render_generated(entry, recipe, cdirs[recipe['chroot']], dest)
        index[entry['name']] = entry
    for cdir in cdirs.values():
        reset(cdir)
    with open(os.path.join(tmp, 'index.json'), 'w') as handle:
        json.dump(index, handle, indent=1, sort_keys=True)
    with open(os.path.join(tmp, '.stamp'), 'w') as handle:
        handle.write(stamp + '\n')
    if os.path.exists(out):
        shutil.rmtree(out)
    os.rename(tmp, out)
    log('rendered %d trees into %s' % (len(todo), out))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--only', nargs='*')
    parser.add_argument('--force', action='store_true')
    parser.add_argument('--cache')
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('must run as root (chroot)')
    try:
        print(render(os.path.abspath(args.out), args.only, args.force, args.cache))
    except (RenderError, subprocess.TimeoutExpired) as exc:
        log('ERROR: %s' % exc)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
