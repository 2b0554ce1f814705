#!/usr/bin/env python3
# Writes man/natkit-COMMAND.1 for the commands listed in pages.py: the synopsis, description,
# options and exit status come from `natkit COMMAND --help`, the other sections from pages.py.
# man/natkit.1 and man/natkit-status.1 are written by hand. Run after changing a --help text:
#   python3 scripts/man/gen.py build/natkit man
# then read the diff (tests/integration/test_install.sh checks every option of --help is in
# the page, and lints every page).
import os, re, subprocess, sys
NATKIT=sys.argv[1]
OUT=sys.argv[2]
HERE=os.path.dirname(os.path.abspath(__file__))
DATE=subprocess.check_output(['date','+%F']).decode().strip()
VER=subprocess.run([NATKIT, '--version'], capture_output=True, text=True).stdout.split()[1]

def esc(t):
    t=t.replace('\\','\\e')
    return t

# A flag or metavariable text: flags bold, metavariables italic.
def fl(t):
    out=[]
    for w in re.split(r'(\s+|,\s*|\[|\]|\||\(|\)|\.\.\.)', t):
        if not w: continue
        if re.match(r'^--?[a-z0-9][a-z0-9-]*$', w):
            out.append('\\fB'+w.replace('-','\\-')+'\\fR')
        elif re.match(r'^[A-Z][A-Z0-9_:\-]*$', w) and len(w)>1 or w in ('S','P','R','T','U','N'):
            out.append('\\fI'+w+'\\fR')
        else:
            out.append(esc(w))
    return ''.join(out)

def text(t):
    # running text: escape, and mark --options bold
    t=esc(t)
    t=re.sub(r'(?<![\w-])(--?[a-z][a-z0-9-]*)', lambda m:'\\fB'+m.group(1).replace('-','\\-')+'\\fR', t)
    t=t.replace('`','')
    lines=[]
    for l in t.split('\n'):
        l=l.strip()
        if l.startswith('.') or l.startswith("'"): l='\\&'+l
        lines.append(l)
    return '\n'.join(lines)

def parse_help(cmd):
    lines=subprocess.run([NATKIT, cmd, '--help'], capture_output=True, text=True).stdout.rstrip('\n').split('\n')
    i=0; syn=[]
    while i<len(lines) and lines[i].strip():
        syn.append(lines[i].replace('usage: ','').strip()); i+=1
    syn=' '.join(syn)
    desc=[]; cur=[]
    while i<len(lines) and not re.match(r'^  [-(]', lines[i]):
        if lines[i].strip()=='' :
            if cur: desc.append('\n'.join(cur)); cur=[]
        else: cur.append(lines[i])
        i+=1
    if cur: desc.append('\n'.join(cur))
    opts=[]; tail=[]
    while i<len(lines):
        l=lines[i]
        m=re.match(r'^  (-\S.*?)(\s{2,}(.*))?$', l)
        if m and not l.startswith('   '):
            opts.append([m.group(1).strip(), (m.group(3) or '').strip()])
        elif l.startswith('  (') :
            tail.append(l.strip())
        elif l.strip()=='' :
            pass
        elif l.startswith('   ') and opts and not tail:
            opts[-1][1]+=('\n' if opts[-1][1] else '')+l.strip()
        else:
            tail.append(l.strip())
        i+=1
    return syn, desc, opts, tail

def synopsis(cmd, syn):
    # syn: "natkit cmd ...": break at option groups
    rest=syn[len('natkit '+cmd):].strip()
    return '.SY "natkit %s"\n%s\n.YS\n' % (cmd, fl(rest))

def page(cmd, summary, extra_desc='', exit_status=None, files=None, examples=None, seealso=None,
         extra_opts=None, sections=None):
    syn, desc, opts, tail = parse_help(cmd)
    name='natkit-'+cmd
    o=[]
    o.append('.\\" Man page for natkit %s; options as in `natkit %s --help` (src/cli/cmd_%s.c).' % (cmd, cmd, cmd.replace('-','_')))
    o.append('.TH %s 1 %s "natkit %s" "natkit manual"' % (name.upper().replace('-','\\-'), DATE, VER))
    o.append('.SH NAME\n%s \\- %s' % (name.replace('-','\\-'), summary))
    o.append('.SH SYNOPSIS\n'+synopsis(cmd, syn).rstrip())
    o.append('.SH DESCRIPTION')
    first=True
    for p in desc:
        if not first: o.append('.PP')
        first=False
        o.append(text(p))
    if extra_desc:
        o.append('.PP\n'+extra_desc.strip())
    o.append('.SH OPTIONS')
    for f,t in opts + (extra_opts or []):
        o.append('.TP\n'+fl(f)+'\n'+text(t))
    idx=next((k for k,x in enumerate(tail) if x.startswith('exit status')), len(tail))
    help_exit=' '.join(tail[idx:]).replace('exit status: ','',1)
    for x in tail[:idx]:
        if x.startswith('(the other'): continue
        o.append('.PP\n'+text(x))
    if exit_status is None:
        exit_status=help_exit
    o.append('.TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nPrint the usage and exit 0.')
    for title, body in (sections or []):
        o.append('.SH '+title+'\n'+body.strip())
    o.append('.SH EXIT STATUS\n'+text(exit_status.strip()))
    if files: o.append('.SH FILES\n'+files.strip())
    if examples: o.append('.SH EXAMPLES\n'+examples.strip())
    sa=(seealso or '\\fBnatkit\\fR(1)').strip().replace(', \\fB'+name.replace('-','\\-')+'\\fR(1)','')
    o.append('.SH SEE ALSO\n'+sa)
    open(OUT+'/'+name+'.1','w').write('\n'.join(o)+'\n')

exec(open(os.path.join(HERE, 'pages.py')).read())
