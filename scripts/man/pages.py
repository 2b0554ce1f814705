KEYFILE='''.TP
.I $XDG_CONFIG_HOME/natkit/key
The identity key (default \\fI~/.config/natkit/key\\fR), made when missing; see \\fBnatkit\\-keygen\\fR(1).'''
SEE_P2P='\\fBnatkit\\fR(1), \\fBnatkit\\-hub\\fR(1), \\fBnatkit\\-keygen\\fR(1), \\fBnatkit\\-listen\\fR(1), \\fBnatkit\\-connect\\fR(1), \\fBnatkit\\-status\\fR(1)'
SERVER_EXIT='0 stopped by SIGINT or SIGTERM, 1 could not start (an address in use, a file that cannot be read, ...) or failed while running, 2 usage error (a bad option, value or configuration line).'
def conf_section(srv, extra):
    return ('CONFIGURATION FILE', '''With \\fB\\-\\-config\\fR \\fIFILE\\fR the options are read from \\fIFILE\\fR, in order, where the
option stands on the command line: options after it override the file, options before it
are overridden. One option a line, in coturn's \\fIturnserver.conf\\fR style:
.PP
.RS
.nf
name=value
name value
name              (a flag: an option without a value)
.fi
.RE
.PP
The name is the long option without its dashes (a leading \\fB\\-\\-\\fR is allowed).
Blank lines and lines starting with \\fB#\\fR are skipped; a \\fB#\\fR after a space or tab
starts a comment at the end of a line (so a value may contain \\fB#\\fR when it does not
follow a space); a value in double quotes is taken as it is. A file may read another with
\\fBconfig\\fR \\fIFILE\\fR (up to 4 deep). An unknown name, a missing or extra value, or a
bad value stops the server with exit status 2 and a message naming \\fIFILE\\fR:\\fILINE\\fR.
'''+extra)
def sysd(srv):
    return '''.TP
.I /etc/natkit/%s.conf
The configuration read by the systemd unit \\fInatkit\\-%s.service\\fR (a hardened service:
a dynamic user, no capability but \\fBCAP_NET_BIND_SERVICE\\fR).
.TP
.I /usr/share/doc/natkit/examples/%s.conf
An example configuration with every option.''' % (srv, srv, srv)

page('listen', 'accept connections from peers by ID at a hub', extra_opts=[('--user U', 'TURN username, with --turn'), ('--pass P', 'TURN password, with --turn')],
     exit_status='0 stopped by SIGINT or SIGTERM, 1 could not start or writing stdout failed, 2 usage error.',
     files=KEYFILE,
     examples='''.EX
natkit hub \\-\\-listen 0.0.0.0:7000 &
natkit keygen \\-\\-out a.key
natkit listen \\-\\-hub 127.0.0.1:7000 \\-\\-key a.key \\-\\-stun 127.0.0.1:3478 > received.bin
natkit listen \\-\\-hub hub.example.org:7000 \\-\\-forward 127.0.0.1:22 \\-\\-allow PEER_ID
.EE''', seealso=SEE_P2P)

page('connect', 'connect to a peer by ID, over the best path there is',
     extra_opts=[(f,t) for f,t in parse_help('listen')[2] if f.split()[0] in
                 ('--hub','--stun','--turn','--key','--bind','--keepalive','--cc','--hub-tls','--json')]+[('--user U', 'TURN username, with --turn'), ('--pass P', 'TURN password, with --turn')],
     files=KEYFILE,
     examples='''.EX
natkit connect PEER_ID \\-\\-hub 127.0.0.1:7000 \\-\\-stun 127.0.0.1:3478 < big.file
natkit connect PEER_ID \\-\\-hub hub.example.org:7000 \\-\\-local 127.0.0.1:2222 &
ssh \\-p 2222 user@127.0.0.1
.EE''', seealso=SEE_P2P)

page('hub', 'run a hub: peers register by ID, exchange signalling and relay packets',
     exit_status=SERVER_EXIT, sections=[conf_section('hub', '''.PP
coturn's \\fBlistening\\-ip\\fR and \\fBlistening\\-port\\fR (defaults 0.0.0.0 and 3478) are
accepted and make one \\fB\\-\\-listen\\fR; \\fBpkey\\fR is \\fB\\-\\-key\\fR.''')],
     files=sysd('hub'),
     examples='''.EX
natkit hub \\-\\-listen 0.0.0.0:7000
natkit hub \\-\\-config /etc/natkit/hub.conf
systemctl enable \\-\\-now natkit\\-hub
.EE''', seealso=SEE_P2P)

page('turn-server', 'run a TURN relay server (RFC 8656; UDP, TCP, TLS)',
     exit_status=SERVER_EXIT, sections=[conf_section('turn-server', '''.PP
Both natkit's names and coturn's (in parentheses above) are accepted in the file and on the
command line, as are coturn's \\fBlistening\\-ip\\fR, \\fBlistening\\-port\\fR and
\\fBtls\\-listening\\-port\\fR; coturn's flags that natkit always implies
(\\fBlt\\-cred\\-mech\\fR, \\fBuse\\-auth\\-secret\\fR, \\fBfingerprint\\fR, \\fBno\\-cli\\fR,
\\fBno\\-dtls\\fR, \\fBno\\-multicast\\-peers\\fR, \\fBno\\-loopback\\-peers\\fR, \\fBverbose\\fR)
are accepted and ignored. Passwords given on the command line are wiped from it.''')],
     files=sysd('turn-server'),
     examples='''.EX
natkit turn\\-server \\-\\-listen 0.0.0.0:3478 \\-\\-realm example.org \\e
    \\-\\-user alice:secret \\-\\-relay\\-ip 203.0.113.10
natkit turn\\-server \\-\\-config /etc/natkit/turn\\-server.conf
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-turn\\-check\\fR(1), \\fBturnserver\\fR(1)')

page('stun-server', 'run a STUN server (RFC 8489; RFC 5780 with --alt-ip)',
     exit_status=SERVER_EXIT, sections=[conf_section('stun-server', '''.PP
coturn's names are accepted too: \\fBlistening\\-ip\\fR and \\fBlistening\\-port\\fR (defaults
0.0.0.0 and 3478) make one \\fB\\-\\-listen\\fR, \\fBalt\\-listening\\-port\\fR is
\\fB\\-\\-alt\\-port\\fR, \\fBrelay\\-threads\\fR is \\fB\\-\\-threads\\fR.''')],
     files=sysd('stun-server'),
     examples='''.EX
natkit stun\\-server \\-\\-listen 203.0.113.10:3478 \\-\\-alt\\-ip 203.0.113.11
natkit stun\\-server \\-\\-config /etc/natkit/stun\\-server.conf
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-discover\\fR(1), \\fBnatkit\\-nat\\-type\\fR(1)')

page('keygen', 'make an identity key pair and print its peer ID',
     files=KEYFILE,
     examples='''.EX
natkit keygen
natkit keygen \\-\\-out a.key
.EE''', seealso=SEE_P2P)

page('turn-user', "manage the users of turn-server's coturn-compatible user database",
     exit_status='0 done, 1 failed (the database cannot be read or reached, the user is not there), 2 usage error.',
     examples='''.EX
natkit turn\\-user add \\-\\-userdb /var/lib/natkit/turndb \\-\\-realm example.org \\-\\-user alice \\-\\-pass\\-file pw.txt
natkit turn\\-user list \\-\\-userdb /var/lib/natkit/turndb
turnadmin \\-l \\-b /var/lib/natkit/turndb
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-turn\\-server\\fR(1), \\fBturnadmin\\fR(1)')

page('discover', "find this host's public (mapped) address with STUN",
     examples='''.EX
natkit discover \\-\\-stun stun.example.org
natkit discover \\-\\-stun 127.0.0.1:3478 \\-\\-json
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-nat\\-type\\fR(1), \\fBnatkit\\-stun\\-server\\fR(1)')

page('nat-type', 'find how the NAT behaves (RFC 5780 mapping, filtering, hairpinning, ...)',
     examples='''.EX
natkit nat\\-type \\-\\-stun stun.example.org \\-\\-json
natkit nat\\-type \\-\\-stun 127.0.0.1:3478 \\-\\-lifetime \\-\\-lifetime\\-max 120
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-discover\\fR(1), \\fBnatkit\\-stun\\-server\\fR(1)')

page('turn-check', 'allocate on a TURN server and measure echoes through the relay',
     examples='''.EX
turnutils_peer \\-L 127.0.0.1 \\-p 9000 &
natkit turn\\-check \\-\\-turn 127.0.0.1:3480 \\-\\-user alice \\-\\-pass secret \\-\\-peer 127.0.0.1:9000
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-turn\\-server\\fR(1), \\fBturnutils_peer\\fR(1)')

page('accept', 'wait for one natkit dial, upgrade to a sealed TCP stream, pipe stdin/stdout',
     files=KEYFILE,
     examples='''.EX
natkit accept \\-\\-advertise\\-ip 203.0.113.7 \\-\\-port 40000
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-dial\\fR(1)')

page('dial', 'reach a natkit accept at IP:PORT over UDP, then a sealed TCP stream',
     files=KEYFILE,
     examples='''.EX
natkit dial 203.0.113.7:40000 \\-\\-peer\\-id PEER_ID < file
.EE''', seealso='\\fBnatkit\\fR(1), \\fBnatkit\\-accept\\fR(1)')
