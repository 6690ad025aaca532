# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by deb-smoke.sh and rpm-build.sh: copy the source tree to package
# into a scratch directory.
#
#   SECD_PACKAGE_SOURCE=head      (default) the committed tree, git archive HEAD:
#                                 what CI and a release see; uncommitted work of
#                                 anyone sharing this working tree stays out
#   SECD_PACKAGE_SOURCE=worktree  the working tree as git sees it: tracked files
#                                 as they are now, plus new files not ignored
#                                 (never build directories)
# Outside a git checkout the files are copied without build*/ and debian/.

# secd_source_tree SRCDIR DEST: fills DEST (which must exist) with the tree.
secd_source_tree() {
        local srcdir=$1 dest=$2
        if ! git -C "$srcdir" rev-parse --git-dir >/dev/null 2>&1; then
                tar -C "$srcdir" -c --exclude='./build*' --exclude='./debian' . | tar -x -C "$dest"
                return
        fi
        case "${SECD_PACKAGE_SOURCE:-head}" in
        head)
                git -C "$srcdir" archive --format=tar HEAD | tar -x -C "$dest"
                ;;
        worktree)
                (cd "$srcdir" && git ls-files -z --cached --others --exclude-standard) |
                        (cd "$srcdir" && tar -c --null --ignore-failed-read -T - 2>/dev/null) |
                        tar -x -C "$dest"
                ;;
        *)
                echo "SECD_PACKAGE_SOURCE must be head or worktree, not '$SECD_PACKAGE_SOURCE'" >&2
                return 1
                ;;
        esac
}
