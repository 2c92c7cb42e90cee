"""Every relative link in the README and docs/ points to a file that exists, and every ``#anchor`` into a markdown file
to one of its headings (GitHub's anchor rule), so the sentences that cite a file keep pointing at it."""
import re
import subprocess
from os import path as osp

import pytest
from conftest import REPO

LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
FENCE = re.compile(r'^(```|~~~).*?^\1', re.S | re.M)


def github_anchor(heading):
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped (not ``-``, ``_``), spaces to ``-``."""
    text = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip())  # a link keeps its text
    text = re.sub(r'[^\w\- ]', '', text.replace('`', '').lower())
    return text.replace(' ', '-')


def anchors(md_path):
    """The anchors of a markdown file's headings (a repeated heading gets ``-1``, ``-2``, ... as on GitHub)."""
    text = FENCE.sub('', open(md_path, encoding='utf-8').read())
    seen, found = {}, set()
    for line in text.splitlines():
        match = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
        if match:
            slug = github_anchor(match.group(1))
            found.add(slug if slug not in seen else f'{slug}-{seen[slug]}')
            seen[slug] = seen.get(slug, 0) + 1
    return found


def markdown_files():
    try:
        out = subprocess.run(['git', 'ls-files', 'README.md', 'docs/*.md', 'docs/**/*.md'], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): the README and docs/ itself
        out = ['README.md'] + [f'docs/{f}' for f in sorted(__import__('os').listdir(osp.join(REPO, 'docs')))
                               if f.endswith('.md')]
    return sorted(set(out))


def test_github_anchor_rule_golden():
    heading = "Q2 (the paper's Table 2): SRResNet-50 and -100 as the central model, seed 0: no better exit"
    expected = 'q2-the-papers-table-2-srresnet-50-and--100-as-the-central-model-seed-0-no-better-exit'
    assert github_anchor(heading) == expected  # "and -100": the space and the hyphen give two hyphens
    assert github_anchor('The demo (`make demo`)') == 'the-demo-make-demo'
    assert github_anchor('Q3 (what one run gives): seeds 0-4') == 'q3-what-one-run-gives-seeds-0-4'


def test_anchors_number_repeated_headings(tmp_path):
    md = tmp_path / 'a.md'
    md.write_text('# Setup\n\n## Setup\n\n```\n# not a heading\n```\n### Budgets ##\n')
    assert anchors(str(md)) == {'setup', 'setup-1', 'budgets'}


@pytest.mark.parametrize('md', markdown_files())
def test_relative_links_and_anchors_resolve(md):
    text = FENCE.sub('', open(osp.join(REPO, md), encoding='utf-8').read())
    broken = []
    for target in LINK.findall(text):
        if re.match(r'[a-z]+:', target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition('#')
        full = osp.normpath(osp.join(REPO, osp.dirname(md), path)) if path else osp.join(REPO, md)
        if not osp.exists(full):
            broken.append(f'{target}: {osp.relpath(full, REPO)} does not exist')
        elif anchor and full.endswith('.md') and anchor not in anchors(full):
            broken.append(f'{target}: no heading of {osp.relpath(full, REPO)} has the anchor #{anchor}')
    assert not broken, f'{md}: ' + '; '.join(broken)
