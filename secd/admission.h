/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Admission on accept: who is this process, and may it use this endpoint?
 * Gathers the facts (policy/identity.h, policy/exe-hash.h), asks
 * policy_evaluate() and acts: journal entry, audit row, counters. It never
 * decides on its own, except that a traced peer, a peer outside the initial
 * user namespace, and any failure to establish the facts are denials.
 */

#include "manager.h"

/*
 * Judge the peer of the accepted connection fd on endpoint kind. Returns
 * whether it is admitted. The caller owns fd (until mTLS lands, it closes
 * it right after).
 */
bool admission_check(Manager *m, PolicyEndpoint kind, int fd);
