/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The enroll endpoint: io.secd.Enroll (and org.varlink.service, listing
 * only that interface) on the control connection machinery. Each Issue
 * call is rate-limited per connect-time uid, the live peer is judged by
 * the policy for endpoint "enroll" (admission_check_async(): cold hashing
 * off the loop), and an admitted peer gets a client certificate naming
 * its uid and executable hash (ca_issue_local()).
 */

#include "manager.h"

/* Take over an accepted connection on the enroll endpoint (closes fd on failure). */
int enroll_connection_new(Manager *m, int fd);
