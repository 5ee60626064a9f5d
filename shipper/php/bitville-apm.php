<?php
/**
 * Bitville APM agent: the one file an application includes.
 *
 *     define('BITVILLE_APM_PROJECT', 'my-app');   // optional; else [general] project_name
 *     require_once '/path/to/bitville-apm.php';   // or php.ini auto_prepend_file
 *     $id = bitville_apm_get_correlation_id();
 *     bitville_apm_add_context('user_id', $userId);
 *     bitville_apm_attach_phalcon($di->get('db')); // Phalcon; or new \BitvilleApm\Pdo(...)
 *
 * Config: /etc/bitville-apm/profiling.ini, or the file named by the
 * environment variable BITVILLE_APM_CONFIG. Off unless [general] enabled.
 * `php bitville-apm.php --check` prints what the agent will do here.
 *
 * PHP 7.4 and later; no Composer. It never throws, warns or prints into the
 * application (see src/Agent.php).
 */

// Loaded twice under two paths (a symlink, two copies): the first one wins,
// since redeclaring a class or function would be a fatal error.
if (!class_exists('BitvilleApm\Agent', false)) {
    require_once __DIR__ . '/src/Util.php';
    require_once __DIR__ . '/src/Config.php';
    require_once __DIR__ . '/src/Redactor.php';
    require_once __DIR__ . '/src/Spool.php';
    require_once __DIR__ . '/src/Profiler.php';
    require_once __DIR__ . '/src/SqlRecorder.php';
    require_once __DIR__ . '/src/Capture.php';
    require_once __DIR__ . '/src/Agent.php';
    require_once __DIR__ . '/src/Pdo.php';
    require_once __DIR__ . '/src/PdoStatement.php';
    require_once __DIR__ . '/src/PhalconListener.php';
}

if (!function_exists('bitville_apm_get_correlation_id')) {
    /** UUID v4 of this request, the same for every call; made even when the agent is off. */
    function bitville_apm_get_correlation_id()
    {
        try {
            return \BitvilleApm\Agent::correlationId();
        } catch (\Throwable $e) {
            return '00000000-0000-4000-8000-000000000000';
        }
    }

    /** Adds a key and value to this request's record, redacted like the rest. */
    function bitville_apm_add_context($key, $value)
    {
        try {
            \BitvilleApm\Agent::addContext($key, $value);
        } catch (\Throwable $e) {
            // Never in the application's way.
        }
    }

    /**
     * Attaches the SQL listener to a Phalcon connection or events manager.
     * Returns whether it was attached.
     */
    function bitville_apm_attach_phalcon($connectionOrEventsManager)
    {
        try {
            return \BitvilleApm\PhalconListener::attach($connectionOrEventsManager) !== null;
        } catch (\Throwable $e) {
            return false;
        }
    }
}

// Run as a script with --check: report, do not record.
if (PHP_SAPI === 'cli' && isset($_SERVER['argv'][0]) && realpath($_SERVER['argv'][0]) === __FILE__) {
    if (in_array('--check', $_SERVER['argv'], true)) {
        require_once __DIR__ . '/src/Check.php';
        exit(\BitvilleApm\Check::run());
    }
    echo "usage: php ", basename(__FILE__), " --check\n";
    exit(2);
}

\BitvilleApm\Agent::boot();
