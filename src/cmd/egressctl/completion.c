/* egressctl completion bash|zsh: the shell completion script, as kubectl completion
 * prints it (source it, or install it where the shell looks). It completes command names
 * (from the command table), kinds after get/delete/diff, resource names (by asking
 * egressctl get KIND -o name, with the --store and -n already typed), proxy-config kinds,
 * and the flags every command shares. zsh runs the bash function through bashcompinit. */
#include <stdio.h>
#include <string.h>

#include "cmd/egressctl/ctl.h"

static const char completion_usage[] =
	"Output the shell completion code for bash or zsh.\n"
	"\n"
	"Usage:\n"
	"  egressctl completion bash|zsh\n"
	"\n"
	"Examples:\n"
	"  source <(egressctl completion bash)\n"
	"  egressctl completion bash > /etc/bash_completion.d/egressctl\n"
	"  source <(egressctl completion zsh)        # in ~/.zshrc\n";

#define CTL_NAME(name, summary) #name,
static const char *const completion_cmds[] = { CTL_COMMANDS(CTL_NAME) };
#undef CTL_NAME

static const char completion_bash[] =
	"_egressctl()\n"
	"{\n"
	"    local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
	"    local i cmd=\"\" kind=\"\" opts=()\n"
	"    for ((i = 1; i < COMP_CWORD; i++)); do\n"
	"        case \"${COMP_WORDS[i]}\" in\n"
	"        --store|-n|--namespace) opts+=(\"${COMP_WORDS[i]}\" \"${COMP_WORDS[i+1]}\"); ((i++)) ;;\n"
	"        --store=*|--namespace=*) opts+=(\"${COMP_WORDS[i]}\") ;;\n"
	"        -*) ;;\n"
	"        *) if [[ -z $cmd ]]; then cmd=${COMP_WORDS[i]}; elif [[ -z $kind ]]; then kind=${COMP_WORDS[i]}; fi ;;\n"
	"        esac\n"
	"    done\n"
	"    case \"$prev\" in\n"
	"    -f|--filename) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
	"    --store) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"
	"    -o|--output) COMPREPLY=($(compgen -W \"yaml json name wide short text log\" -- \"$cur\")); return ;;\n"
	"    --dry-run) COMPREPLY=($(compgen -W \"none client server\" -- \"$cur\")); return ;;\n"
	"    esac\n"
	"    if [[ $cur == -* ]]; then\n"
	"        COMPREPLY=($(compgen -W \"--store --namespace -n --help -f --filename -o --output -l --selector -A --all-namespaces --dry-run\" -- \"$cur\"))\n"
	"        return\n"
	"    fi\n"
	"    if [[ -z $cmd ]]; then\n"
	"        COMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))\n"
	"        return\n"
	"    fi\n"
	"    case \"$cmd\" in\n"
	"    get|delete|edit|describe)\n"
	"        if [[ -z $kind ]]; then\n"
	"            COMPREPLY=($(compgen -W \"serviceentry gateway virtualservice destinationrule secret se gw vs dr namespace\" -- \"$cur\"))\n"
	"        else\n"
	"            COMPREPLY=($(compgen -W \"$(\"${COMP_WORDS[0]}\" \"${opts[@]}\" get \"$kind\" -o name 2>/dev/null | sed 's,.*/,,')\" -- \"$cur\"))\n"
	"        fi ;;\n"
	"    proxy-config)\n"
	"        [[ -z $kind ]] && COMPREPLY=($(compgen -W \"cluster endpoint route listener secret authz all log\" -- \"$cur\")) ;;\n"
	"    completion)\n"
	"        [[ -z $kind ]] && COMPREPLY=($(compgen -W \"bash zsh\" -- \"$cur\")) ;;\n"
	"    create)\n"
	"        [[ -z $kind ]] && COMPREPLY=($(compgen -W \"secret namespace\" -- \"$cur\")) ;;\n"
	"    ca)\n"
	"        [[ -z $kind ]] && COMPREPLY=($(compgen -W \"init issue\" -- \"$cur\")) ;;\n"
	"    esac\n"
	"}\n"
	"complete -o default -F _egressctl egressctl\n";

int ctl_cmd_completion(struct ctl *c, int argc, char **argv)
{
	struct ctl_strs pos = { NULL, 0 };
	const struct ctl_flag flags[] = { { NULL, 0, CTL_FLAG_BOOL, NULL } };
	char words[512] = "";
	bool help = false;
	int rc = 1;

	if (ctl_parse(c, argc, argv, flags, &pos, &help) < 0)
		goto out;
	if (help) {
		fputs(completion_usage, stdout);
		rc = 0;
		goto out;
	}
	if (pos.n != 1) {
		fprintf(stderr, "error: %s.\nSee 'egressctl completion -h' for help and examples\n",
		        pos.n ? "Too many arguments. Expected only the shell type" : "Shell not specified");
		goto out;
	}
	if (strcmp(pos.v[0], "bash") != 0 && strcmp(pos.v[0], "zsh") != 0) {
		fprintf(stderr, "error: Unsupported shell type \"%s\".\n", pos.v[0]);
		goto out;
	}
	for (size_t i = 0; i < sizeof(completion_cmds) / sizeof(completion_cmds[0]); i++) {
		size_t l = strlen(words);

		snprintf(words + l, sizeof(words) - l, "%s%s", l ? " " : "", completion_cmds[i]);
		for (char *p = words + l; *p; p++)
			if (*p == '_')
				*p = '-';
	}
	if (strcmp(pos.v[0], "zsh") == 0)
		printf("#compdef egressctl\n# egressctl's bash completion, through zsh's bashcompinit.\n"
		       "autoload -U +X bashcompinit && bashcompinit\n");
	else
		printf("# bash completion for egressctl\n");
	printf(completion_bash, words);
	rc = 0;
out:
	ctl_strs_free(&pos);
	return rc;
}
