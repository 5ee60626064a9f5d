<?php
/**
 * Listener for Phalcon's `db` events. Attach it in one call:
 *
 *     bitville_apm_attach_phalcon($connection);     // a Phalcon\Db\Adapter
 *     bitville_apm_attach_phalcon($eventsManager);  // or its events manager
 *
 * Phalcon fires beforeQuery and afterQuery around every statement, with the
 * connection as the source: getSQLStatement(), getSQLVariables() and
 * getSQLBindTypes() describe it. A statement that throws never reaches
 * afterQuery; it stays open and is recorded as failed when the next statement
 * starts on that connection or when the request ends.
 *
 * Transactions and savepoints are announced by events fired before the
 * operation, so they are recorded without a duration.
 *
 * Every method returns nothing: returning false from beforeQuery would cancel
 * the application's statement.
 */

namespace BitvilleApm;

class PhalconListener
{
    /** @var array<int,array> Open statement token per connection (spl_object_id). */
    private $pending = [];

    /**
     * Attaches a new listener to a connection (its events manager, created when
     * it has none) or to an events manager. Returns the listener, or null when
     * the target is neither.
     *
     * @param object $target
     * @return self|null
     */
    public static function attach($target)
    {
        try {
            if (!is_object($target)) {
                return null;
            }
            $listener = new self();
            if (method_exists($target, 'getSQLStatement') && method_exists($target, 'getEventsManager')) {
                $manager = $target->getEventsManager();
                if (!is_object($manager)) {
                    if (!class_exists('Phalcon\Events\Manager')) {
                        return null;
                    }
                    $manager = new \Phalcon\Events\Manager();
                    $target->setEventsManager($manager);
                }
                $manager->attach('db', $listener);
                return $listener;
            }
            if (method_exists($target, 'attach')) {
                $target->attach('db', $listener);
                return $listener;
            }
        } catch (\Throwable $e) {
            // An unexpected framework version: the application runs unobserved.
        }
        return null;
    }

    public function beforeQuery($event, $connection)
    {
        try {
            if (Agent::current() === null || !is_object($connection)) {
                return;
            }
            $id = spl_object_id($connection);
            if (isset($this->pending[$id])) {
                Capture::after($this->pending[$id], 'the statement threw before afterQuery');
                unset($this->pending[$id]);
            }
            $this->tag($connection);
            $sql = (string) $connection->getSQLStatement();
            if ($sql === '' && method_exists($connection, 'getRealSQLStatement')) {
                $sql = (string) $connection->getRealSQLStatement();
            }
            $token = Capture::before('query', $sql, $connection->getSQLVariables(),
                $connection->getSQLBindTypes(), 'phalcon');
            if ($token !== null) {
                $this->pending[$id] = $token;
            }
        } catch (\Throwable $e) {
            // Never in the application's way.
        }
    }

    public function afterQuery($event, $connection)
    {
        try {
            $id = is_object($connection) ? spl_object_id($connection) : -1;
            if (isset($this->pending[$id])) {
                Capture::after($this->pending[$id]);
                unset($this->pending[$id]);
            }
        } catch (\Throwable $e) {
            // Never in the application's way.
        }
    }

    public function beginTransaction($event, $connection)
    {
        // Tag before BEGIN, so a rollback cannot undo the SET.
        $this->tag($connection);
        $this->instant('begin', 'BEGIN');
    }

    public function commitTransaction($event, $connection)
    {
        $this->instant('commit', 'COMMIT');
    }

    public function rollbackTransaction($event, $connection)
    {
        $this->instant('rollback', 'ROLLBACK');
    }

    public function createSavepoint($event, $connection, $name = null)
    {
        $this->instant('savepoint', 'SAVEPOINT ' . self::name($name));
    }

    public function releaseSavepoint($event, $connection, $name = null)
    {
        $this->instant('release_savepoint', 'RELEASE SAVEPOINT ' . self::name($name));
    }

    public function rollbackSavepoint($event, $connection, $name = null)
    {
        $this->instant('rollback_savepoint', 'ROLLBACK TO SAVEPOINT ' . self::name($name));
    }

    private function instant($op, $sql)
    {
        try {
            Capture::instant($op, $sql, 'phalcon');
        } catch (\Throwable $e) {
            // Never in the application's way.
        }
    }

    /** Sets application_name through the connection's own PDO handle, past Phalcon's events. */
    private function tag($connection)
    {
        try {
            if (!is_object($connection) || !method_exists($connection, 'getInternalHandler')) {
                return;
            }
            if (method_exists($connection, 'getType') && $connection->getType() !== 'pgsql') {
                return;
            }
            $pdo = $connection->getInternalHandler();
            if ($pdo instanceof \PDO) {
                Capture::tag($pdo, function ($sql) use ($pdo) {
                    return $pdo->exec($sql);
                });
            }
        } catch (\Throwable $e) {
            // Untagged is fine; broken is not.
        }
    }

    private static function name($name)
    {
        return is_scalar($name) ? Util::truncate((string) $name, 128) : '';
    }
}
