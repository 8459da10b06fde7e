/* version: the build's identity, from the header the Makefile generates. */
#include "core/version.h"

#include "build_version.h"   /* $(BUILD)/gen/build_version.h: EGRESS_VERSION, EGRESS_COMMIT, ... */

const struct version_info version_info = {
	EGRESS_VERSION,
	EGRESS_COMMIT,
	EGRESS_TREE_STATE,
	EGRESS_COMMIT_DATE,
};
