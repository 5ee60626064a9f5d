<?php
// PHPUnit bootstrap: the agent's classes (not booted: no config is set for the
// test process itself) and the test helpers.
putenv('BITVILLE_APM_CONFIG=/nonexistent/bitville-apm-test.ini');
require_once __DIR__ . '/../bitville-apm.php';
require_once __DIR__ . '/support/SchemaCheck.php';
require_once __DIR__ . '/support/AgentTestCase.php';
require_once __DIR__ . '/support/PgCluster.php';
