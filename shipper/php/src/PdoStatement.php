<?php
/**
 * The statement class BitvilleApm\Pdo installs (PDO::ATTR_STATEMENT_CLASS):
 * it remembers bound values and records each execute(). Results, return values
 * and exceptions are the parent's, unchanged.
 */

namespace BitvilleApm;

class PdoStatement extends \PDOStatement
{
    /** Cap on remembered bindings, so a runaway loop of binds stays bounded. */
    const MAX_BINDINGS = 256;

    /** @var array Values bound with bindValue()/bindParam(), by parameter. */
    private $bitvilleValues = [];
    /** @var array PDO::PARAM_* types, by parameter. */
    private $bitvilleTypes = [];

    #[\ReturnTypeWillChange]
    public function bindValue($param, $value, $type = \PDO::PARAM_STR)
    {
        if (isset($this->bitvilleValues[$param]) || count($this->bitvilleValues) < self::MAX_BINDINGS) {
            $this->bitvilleValues[$param] = $value;
            $this->bitvilleTypes[$param] = $type;
        }
        return parent::bindValue($param, $value, $type);
    }

    #[\ReturnTypeWillChange]
    public function bindParam($param, &$var, $type = \PDO::PARAM_STR, $maxLength = 0, $driverOptions = null)
    {
        if (isset($this->bitvilleValues[$param]) || count($this->bitvilleValues) < self::MAX_BINDINGS) {
            // By reference: execute() reads the value as it is at that moment.
            $this->bitvilleValues[$param] = &$var;
            $this->bitvilleTypes[$param] = $type;
        }
        if ($driverOptions === null) {
            return parent::bindParam($param, $var, $type, $maxLength);
        }
        return parent::bindParam($param, $var, $type, $maxLength, $driverOptions);
    }

    #[\ReturnTypeWillChange]
    public function execute($params = null)
    {
        $token = null;
        if (Agent::current() !== null) {
            $sql = $this->queryString;
            $prefix = Capture::commentPrefix();
            if ($prefix !== '' && strncmp($sql, $prefix, strlen($prefix)) === 0) {
                $sql = substr($sql, strlen($prefix));
            }
            $bound = $params !== null;
            $token = Capture::before('execute', $sql, $bound ? $params : ($this->bitvilleValues ?: null),
                $bound ? null : $this->bitvilleTypes, 'pdo', !$bound);
        }
        try {
            $result = $params === null ? parent::execute() : parent::execute($params);
        } catch (\Throwable $e) {
            Capture::after($token, $e->getMessage());
            throw $e;
        }
        Capture::after($token, $result === false ? Pdo::errorText($this->errorInfo()) : null,
            $result === true ? Pdo::rows($this) : null);
        return $result;
    }
}
