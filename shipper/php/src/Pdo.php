<?php
/**
 * A drop-in PDO subclass for applications without Phalcon: replace `new \PDO(`
 * with `new \BitvilleApm\Pdo(`. It captures query(), exec() and prepared
 * execute() (through BitvilleApm\PdoStatement), tags PostgreSQL sessions with
 * the correlation ID, and behaves exactly like PDO otherwise: results, return
 * values and exceptions are the parent's, unchanged.
 *
 * Limit: PDO refuses a statement class on persistent connections, so with
 * PDO::ATTR_PERSISTENT prepared execute() is not captured (query and exec are).
 *
 * `#[\ReturnTypeWillChange]` silences PHP 8.1's tentative return types; PHP 7.4
 * reads it as a comment.
 */

namespace BitvilleApm;

class Pdo extends \PDO
{
    public function __construct($dsn, $username = null, $password = null, $options = null)
    {
        $options = is_array($options) ? $options : [];
        if (empty($options[\PDO::ATTR_PERSISTENT]) && !isset($options[\PDO::ATTR_STATEMENT_CLASS])) {
            $options[\PDO::ATTR_STATEMENT_CLASS] = [PdoStatement::class];
        }
        parent::__construct($dsn, $username, $password, $options);
    }

    #[\ReturnTypeWillChange]
    public function query($statement, $mode = null, ...$fetchModeArgs)
    {
        $this->bitvilleTag();
        $token = Capture::before('query', $statement, null, null, 'pdo');
        $sent = Capture::commentPrefix() . $statement;
        try {
            $result = $mode === null ? parent::query($sent) : parent::query($sent, $mode, ...$fetchModeArgs);
        } catch (\Throwable $e) {
            Capture::after($token, $e->getMessage());
            throw $e;
        }
        Capture::after($token, $result === false ? self::errorText($this->errorInfo()) : null,
            $result instanceof \PDOStatement ? self::rows($result) : null);
        return $result;
    }

    #[\ReturnTypeWillChange]
    public function exec($statement)
    {
        $this->bitvilleTag();
        $token = Capture::before('exec', $statement, null, null, 'pdo');
        try {
            $result = parent::exec(Capture::commentPrefix() . $statement);
        } catch (\Throwable $e) {
            Capture::after($token, $e->getMessage());
            throw $e;
        }
        Capture::after($token, $result === false ? self::errorText($this->errorInfo()) : null,
            is_int($result) ? $result : null);
        return $result;
    }

    #[\ReturnTypeWillChange]
    public function prepare($query, $options = [])
    {
        $this->bitvilleTag();
        // The statement records its text without the comment: queryString is
        // what was sent, so the prefix is stripped there.
        return parent::prepare(Capture::commentPrefix() . $query, $options);
    }

    #[\ReturnTypeWillChange]
    public function beginTransaction()
    {
        // Tag before BEGIN, so a rollback cannot undo the SET.
        $this->bitvilleTag();
        return $this->bitvilleTimed('begin', 'BEGIN', function () {
            return parent::beginTransaction();
        });
    }

    #[\ReturnTypeWillChange]
    public function commit()
    {
        return $this->bitvilleTimed('commit', 'COMMIT', function () {
            return parent::commit();
        });
    }

    #[\ReturnTypeWillChange]
    public function rollBack()
    {
        return $this->bitvilleTimed('rollback', 'ROLLBACK', function () {
            return parent::rollBack();
        });
    }

    /** Records a transaction call around $call; its result and exceptions pass through. */
    private function bitvilleTimed($op, $sql, callable $call)
    {
        $token = Capture::before($op, $sql, null, null, 'pdo');
        try {
            $result = $call();
        } catch (\Throwable $e) {
            Capture::after($token, $e->getMessage());
            throw $e;
        }
        Capture::after($token, $result === false ? self::errorText($this->errorInfo()) : null);
        return $result;
    }

    /** Tags this connection once per request, with the parent's exec (no capture, no recursion). */
    private function bitvilleTag()
    {
        Capture::tag($this, function ($sql) {
            return parent::exec($sql);
        });
    }

    /** Rows affected or returned; rowCount() is a field read, never a round trip. */
    public static function rows(\PDOStatement $statement)
    {
        try {
            $n = $statement->rowCount();
            return is_int($n) && $n >= 0 ? $n : null;
        } catch (\Throwable $e) {
            return null;
        }
    }

    /** The driver's message from errorInfo(), for statements that failed without throwing. */
    public static function errorText($info)
    {
        return is_array($info) && isset($info[2]) ? (string) $info[2] : 'statement failed';
    }
}
