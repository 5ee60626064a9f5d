<?php
/**
 * The thin layer both SQL capture paths (Phalcon listener, PDO subclass) go
 * through: it finds the running agent, charges the time to the agent's
 * budget, swallows every failure, and tags PostgreSQL connections with the
 * correlation ID.
 *
 * Statement failures themselves are the application's: they are recorded here
 * and rethrown unchanged by the callers.
 */

namespace BitvilleApm;

final class Capture
{
    /** @var array<int,array{0:\WeakReference,1:string}> Connections tagged this request. */
    private static $tagged = [];

    /**
     * Before a statement. Returns a token for after(), or null when the agent
     * is off or SQL capture is disabled.
     *
     * @return array|null
     */
    public static function before($op, $sql, $params, $types, $source, $oneBased = false)
    {
        $agent = Agent::current();
        if ($agent === null || !$agent->config->sqlEnabled) {
            return null;
        }
        $t0 = hrtime(true);
        try {
            // Over budget, statements are still counted and timed, not captured.
            return $agent->sql()->begin($op, $sql, $params, $types, $source, $oneBased, $agent->withinBudget());
        } catch (\Throwable $e) {
            return null;
        } finally {
            $agent->charge(hrtime(true) - $t0);
        }
    }

    /** After a statement; $error is the failure message, null when it worked. */
    public static function after($token, $error = null, $rows = null)
    {
        $agent = Agent::current();
        if ($token === null || $agent === null) {
            return;
        }
        $t0 = hrtime(true);
        try {
            $agent->sql()->end($token, $error, $rows);
        } catch (\Throwable $e) {
            // Losing one statement's end is better than disturbing the request.
        } finally {
            $agent->charge(hrtime(true) - $t0);
        }
    }

    /** A statement the framework only announces (transactions, savepoints): no duration. */
    public static function instant($op, $sql, $source)
    {
        self::after(self::before($op, $sql, null, null, $source));
    }

    /**
     * Sets application_name = 'bitville:<correlation id>' on a PostgreSQL
     * connection, once per connection per request. $exec runs the SET on the
     * connection directly (not through the capture hooks, so nothing recurses
     * or is recorded). Persistent connections carry the last request's tag
     * until their next use, which retags them.
     *
     * @param \PDO     $pdo
     * @param callable $exec function (string $sql): mixed
     */
    public static function tag($pdo, callable $exec)
    {
        $agent = Agent::current();
        if ($agent === null || !$agent->config->sqlTagApplicationName || !($pdo instanceof \PDO)) {
            return;
        }
        $t0 = hrtime(true);
        $id = spl_object_id($pdo);
        $cid = Agent::correlationId();
        if (isset(self::$tagged[$id]) && self::$tagged[$id][1] === $cid && self::$tagged[$id][0]->get() === $pdo) {
            $agent->charge(hrtime(true) - $t0);
            return;
        }
        if (count(self::$tagged) >= 64) {
            self::$tagged = []; // Bounded: a request with more connections retags some.
        }
        self::$tagged[$id] = [\WeakReference::create($pdo), $cid];
        $mode = null;
        try {
            if ($pdo->getAttribute(\PDO::ATTR_DRIVER_NAME) !== 'pgsql') {
                return;
            }
            // Exceptions, not warnings, while the SET runs: a warning would reach
            // the application's output. The application's mode is restored after.
            $mode = $pdo->getAttribute(\PDO::ATTR_ERRMODE);
            $pdo->setAttribute(\PDO::ATTR_ERRMODE, \PDO::ERRMODE_EXCEPTION);
            $exec("SET application_name = 'bitville:" . $cid . "'");
        } catch (\Throwable $e) {
            // An aborted transaction refuses the SET: the request goes untagged.
        } finally {
            try {
                if ($mode !== null) {
                    $pdo->setAttribute(\PDO::ATTR_ERRMODE, $mode);
                }
            } catch (\Throwable $e) {
                // Nothing more to do.
            }
            $agent->charge(hrtime(true) - $t0);
        }
    }

    /** The sqlcommenter-style prefix when enabled, else ''. At the start, so PostgreSQL's 1 KiB activity truncation keeps it. */
    public static function commentPrefix()
    {
        $agent = Agent::current();
        if ($agent === null || !$agent->config->sqlComment) {
            return '';
        }
        return "/* bitville_correlation_id='" . Agent::correlationId() . "' */ ";
    }

    /** Forgets tagged connections (tests run many requests in one process). */
    public static function reset()
    {
        self::$tagged = [];
    }
}
