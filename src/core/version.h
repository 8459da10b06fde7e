/* version: what this build is, as `git describe` said when it was built.
 *
 * The Makefile writes $(BUILD)/gen/build_version.h before compiling version.c (rewritten only
 * when it changes, so an unchanged tree relinks nothing). A tree without git (a release
 * tarball) builds too, with "unknown" unless `make VERSION=...` names it. */
#ifndef EGRESS_CORE_VERSION_H
#define EGRESS_CORE_VERSION_H

struct version_info {
	const char *version;      /* git describe --tags --always --dirty, or "unknown" */
	const char *commit;       /* the full commit id, or "unknown" */
	const char *tree_state;   /* "clean", "dirty", or "unknown" (kubectl's gitTreeState) */
	const char *date;         /* the commit's date (ISO 8601, UTC): reproducible, unlike
	                           * the time of the build */
};

extern const struct version_info version_info;

#endif
