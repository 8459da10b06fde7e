#!/bin/sh
# Writes a man page (roff, section 1) for an egressgw binary from its own --help text, so
# the page says exactly what the binary says. Ours rather than Debian's help2man: no build
# dependency beyond sh and sed. For egressctl, every command's help follows the main text.
# Usage: scripts/help2man.sh build/egressgw >egressgw.1
set -eu
bin=$1
name=$(basename "$bin")
case $name in
egressgw) summary="egress gateway and sidecar that reads Istio's own configuration" ;;
egressctl) summary="manage egressgw's configuration store as kubectl and istioctl do" ;;
*) echo "help2man.sh: unknown program $name" >&2; exit 1 ;;
esac
# "egressgw version v1.2.3 ..." -> v1.2.3; the date is the commit's (reproducible).
version=$("$bin" --version | sed -n '1s/.*version \([^ ]*\).*/\1/p')
date=$("$bin" --version | sed -n 's/.*commit date \([0-9-]*\).*/\1/p' | head -n 1)
# Preformatted text in roff: backslashes doubled, a leading . or ' neutralized.
roff() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }

printf '.TH %s 1 "%s" "egressgw %s" "User Commands"\n' \
    "$(echo "$name" | tr a-z A-Z)" "${date:-unknown}" "$version"
printf '.SH NAME\n%s \\- %s\n' "$name" "$summary"
printf '.SH DESCRIPTION\n.nf\n'
"$bin" --help | roff
printf '.fi\n'
if [ "$name" = egressctl ]; then
    # The command words, from the "Commands:" block of the main help.
    for cmd in $("$bin" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p'); do
        printf '.SH "EGRESSCTL %s"\n.nf\n' "$(echo "$cmd" | tr a-z A-Z)"
        "$bin" "$cmd" --help | roff
        printf '.fi\n'
    done
fi
printf '.SH VERSION\n.nf\n'
"$bin" --version | roff
printf '.fi\n.SH SEE ALSO\n'
if [ "$name" = egressgw ]; then echo '\fBegressctl\fR(1)'; else echo '\fBegressgw\fR(1)'; fi
printf '.PP\nThe user guide (docs/user-guide.md), installed under share/doc/egressgw.\n'
