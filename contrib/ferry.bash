# shellcheck shell=bash
# Bash completion for ferry(1): subcommands, each subcommand's options, and
# the values of a few options (files, --balance, --log-level, --method).
#
# Subcommands and options are read from the ferry being completed (`ferry
# --help`, `ferry SUBCOMMAND --help`, `ferry --dump-options`) when TAB is
# pressed, so they are those of that binary and never drift. Installed by
# `make install` as $(PREFIX)/share/bash-completion/completions/ferry; or
# `source contrib/ferry.bash`. Needs no bash-completion package.

# The binary: the command word as typed (./ferry, ~/bin/ferry), else ferry.
_ferry_bin() {
    local b=${COMP_WORDS[0]/#\~/$HOME}
    command -v -- "$b" >/dev/null 2>&1 && printf '%s\n' "$b" || printf 'ferry\n'
}

# "subcommands:" section of `ferry --help`: "  socks      SOCKS 4, ...".
_ferry_subcommands() {
    "$1" --help 2>/dev/null | sed -n '/^subcommands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p'
}

# Options of subcommand $2: "  -l, --listen ADDR ..." / "      --user NAME:PASS ...".
# run and check take -c FILE and the global options (first table of --dump-options).
_ferry_options() {
    case $2 in
    run | check)
        printf '%s\n' -c --config --help
        # shellcheck disable=SC2016  # the backquotes are the table's Markdown, not commands
        "$1" --dump-options 2>/dev/null |
            sed -n '/^Global options/,/^Listener options/s/^| `[^`]*` | `\(--[a-z0-9-]*\)`.*/\1/p'
        ;;
    *)
        printf '%s\n' --help
        "$1" "$2" --help 2>/dev/null |
            sed -nE 's/^  (-[a-zA-Z]), (--[a-z0-9-]+).*/\1\n\2/p; s/^      (--[a-z0-9-]+).*/\1/p'
        ;;
    esac
}

# The argument name $2 takes in `ferry $3 --help` (ADDR, FILE, N...), or nothing.
_ferry_metavar() {
    local sub=$3 o
    case $sub in run | check) sub=socks ;; esac    # their global options are every subcommand's
    case $2 in
    -c | --config) echo FILE; return ;;
    --*) o="(-[a-zA-Z], |    )$2" ;;
    -?) o="($2), --[a-z0-9-]+" ;;
    *) return ;;
    esac
    "$1" "$sub" --help 2>/dev/null | sed -nE "s/^  ${o} ([^ ]+).*/\\2/p" | head -n 1
}

_ferry() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev="" ferry sub meta
    COMPREPLY=()
    if ((COMP_CWORD >= 2)); then
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        # --name=VALUE: bash splits it at '=' (COMP_WORDBREAKS) into
        # "--name" "=" "VALUE", the current word being "=" or "VALUE".
        if [[ $cur == "=" ]]; then
            cur=""
        elif [[ $prev == "=" ]] && ((COMP_CWORD >= 3)); then
            prev=${COMP_WORDS[COMP_CWORD - 2]}
        fi
    fi
    ferry=$(_ferry_bin)

    if ((COMP_CWORD == 1)) && [[ $cur != -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_ferry_subcommands "$ferry")" -- "$cur")
        return 0
    fi
    sub=${COMP_WORDS[1]:-}
    if ! _ferry_subcommands "$ferry" | grep -qxF -- "$sub"; then sub=socks; fi

    meta=""
    [[ -n $prev && $prev == -* ]] && meta=$(_ferry_metavar "$ferry" "$prev" "$sub")
    case $meta in
    "") ;;
    FILE | FILE.* | DIR)
        compopt -o filenames 2>/dev/null
        if [[ $meta == DIR ]]; then
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        fi
        return 0
        ;;
    ALGO) mapfile -t COMPREPLY < <(compgen -W "roundrobin leastconn source random2" -- "$cur"); return 0 ;;
    LEVEL) mapfile -t COMPREPLY < <(compgen -W "quiet error warn info debug" -- "$cur"); return 0 ;;
    METHOD)
        mapfile -t COMPREPLY < <(compgen -W "chacha20-ietf-poly1305 aes-128-gcm aes-192-gcm aes-256-gcm" -- "$cur")
        return 0
        ;;
    *) return 0 ;;     # a value only the user knows (ADDR, N, DUR...)
    esac

    if [[ $cur == -* ]]; then
        local opts
        opts=$(_ferry_options "$ferry" "$sub")
        ((COMP_CWORD == 1)) && opts+=$'\n--version\n--dump-options'
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    elif [[ $sub == run || $sub == check ]]; then
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
}

complete -F _ferry ferry
