<?php
// The scenario application: a small shop whose endpoints each carry one
// known cost, so that a spike made by calling one of them has a known cause.
// Served by php-fpm behind nginx with the Bitville APM agent prepended
// (auto_prepend_file); the database goes through BitvilleApm\Pdo.
namespace App;

final class Db
{
    /** @var \PDO|null */
    private static $pdo;

    public static function get()
    {
        if (self::$pdo === null) {
            self::$pdo = new \BitvilleApm\Pdo((string) getenv('SCENARIO_PG_DSN'), 'postgres', null,
                [\PDO::ATTR_ERRMODE => \PDO::ERRMODE_EXCEPTION]);
        }
        return self::$pdo;
    }

    public static function one($sql, array $params)
    {
        $s = self::get()->prepare($sql);
        $s->execute($params);
        return $s->fetch(\PDO::FETCH_ASSOC);
    }
}

final class Reports
{
    /**
     * The CPU-heavy function of scenario 1: pure PHP arithmetic with no
     * internal calls, so that the profiler's leaf frame is this method.
     */
    public static function crunchNumbers($rounds)
    {
        $x = 7;
        for ($i = 0; $i < $rounds; $i++) {
            $x = ($x * 1103515245 + 12345) & 0x7fffffff;
            $x ^= $i;
        }
        return $x;
    }
}

final class Pages
{
    public static function home()
    {
        $p = Db::one('SELECT id, name, price FROM products WHERE id = ?', [1 + random_int(0, 999)]);
        return 'home ' . $p['name'];
    }

    public static function product($id)
    {
        $p = Db::one('SELECT id, name, price FROM products WHERE id = ?', [$id]);
        return 'product ' . ($p ? $p['name'] : 'none');
    }

    /** Scenario 2: orders.customer_email has no index, so this is a sequential scan. */
    public static function search($email)
    {
        $r = Db::one('SELECT count(*) AS n, sum(total) AS total FROM orders WHERE customer_email = ?', [$email]);
        return 'orders ' . $r['n'];
    }

    /** Scenario 3, the waiters: a short update of one hot row. */
    public static function checkout($sku)
    {
        $s = Db::get()->prepare('UPDATE stock SET qty = qty - 1 WHERE sku = ?');
        $s->execute([$sku]);
        return 'checked out ' . $s->rowCount();
    }

    /** Scenario 3, the blocker: holds the hot row's lock in a long transaction. */
    public static function recount($sku, $seconds)
    {
        $db = Db::get();
        $db->beginTransaction();
        $row = Db::one('SELECT qty FROM stock WHERE sku = ? FOR UPDATE', [$sku]);
        Db::one('SELECT pg_sleep(?)', [$seconds]);
        $db->commit();
        return 'recounted ' . $row['qty'];
    }
}

/** The N+1 scenario: one cheap statement per product, from one function. */
final class ProductList
{
    public static function page($page)
    {
        $ids = [];
        for ($i = 0; $i < 400; $i++) {
            $ids[] = 1 + ($page * 400 + $i) % 1000;
        }
        return self::loadVariants($ids);
    }

    public static function loadVariants(array $ids)
    {
        $s = Db::get()->prepare('SELECT price FROM variants WHERE product_id = ?');
        $total = 0;
        foreach ($ids as $id) {
            $s->execute([$id]);
            $total += (int) $s->fetchColumn();
        }
        return $total;
    }
}

/** A file cache, as a small shop has one: the catalog's summary is expensive. */
final class Catalog
{
    public static function summary()
    {
        $file = sys_get_temp_dir() . '/scenario-catalog.cache';
        $cached = @file_get_contents($file);
        if ($cached !== false) {
            return $cached;
        }
        $r = Db::one('SELECT count(*) AS n, sum(o.total) AS total, max(o.note) AS last FROM orders o '
            . 'JOIN products p ON p.price = o.total % 100 WHERE o.note > ?', ['0']);
        $summary = $r['n'] . ' ' . $r['total'];
        @file_put_contents($file . '.' . getmypid(), $summary);
        @rename($file . '.' . getmypid(), $file);
        return $summary;
    }

    public static function purge()
    {
        @unlink(sys_get_temp_dir() . '/scenario-catalog.cache');
        return 'purged';
    }
}

/** Calls to the scenarios' upstream service (shipping rates, payments). */
final class Upstream
{
    public static function get($path)
    {
        $context = stream_context_create(['http' => ['timeout' => 10]]);
        $body = file_get_contents(getenv('SCENARIO_UPSTREAM') . $path, false, $context);
        return $body === false ? '' : $body;
    }
}

final class Shipping
{
    /** The slow external call: the rates service answers slower in the spike. */
    public static function fetchRates($sku)
    {
        return Upstream::get('/rates?sku=' . urlencode($sku));
    }
}

final class Payments
{
    /**
     * Holds the stock row's lock while the payment provider answers: the
     * row lock held while calling out.
     */
    public static function pay($sku)
    {
        $db = Db::get();
        $db->beginTransaction();
        $row = Db::one('SELECT qty FROM stock WHERE sku = ? FOR UPDATE', [$sku]);
        $answer = Upstream::get('/payment?sku=' . urlencode($sku));
        $s = $db->prepare('UPDATE stock SET qty = qty - 1 WHERE sku = ?');
        $s->execute([$sku]);
        $db->commit();
        return 'paid ' . $row['qty'] . ' ' . $answer;
    }
}

final class Invoices
{
    /** The plan flip: an index lookup, until the planner stops choosing it. */
    public static function forCustomer($customer)
    {
        $r = Db::one('SELECT count(*) AS n, sum(amount) AS amount FROM invoices WHERE customer_id = ?', [$customer]);
        return 'invoices ' . $r['n'];
    }
}

$path = (string) parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
switch ($path) {
    case '/ping':
        echo "pong\n";
        break;
    case '/home':
        echo Pages::home(), "\n";
        break;
    case '/product':
        echo Pages::product((int) ($_GET['id'] ?? 1)), "\n";
        break;
    case '/report':
        echo 'report ', Reports::crunchNumbers((int) ($_GET['rounds'] ?? 1000)), "\n";
        break;
    case '/search':
        echo Pages::search((string) ($_GET['email'] ?? '')), "\n";
        break;
    case '/checkout':
        echo Pages::checkout((string) ($_GET['sku'] ?? 'hot')), "\n";
        break;
    case '/admin/recount':
        echo Pages::recount((string) ($_GET['sku'] ?? 'hot'), (float) ($_GET['hold_s'] ?? 1)), "\n";
        break;
    case '/products':
        echo 'products ', ProductList::page((int) ($_GET['page'] ?? 0)), "\n";
        break;
    case '/catalog':
        echo 'catalog ', Catalog::summary(), "\n";
        break;
    case '/admin/cache/purge':
        echo Catalog::purge(), "\n";
        break;
    case '/shipping':
        echo 'rates ', Shipping::fetchRates((string) ($_GET['sku'] ?? 'cold')), "\n";
        break;
    case '/pay':
        echo Payments::pay((string) ($_GET['sku'] ?? 'hot')), "\n";
        break;
    case '/invoices':
        echo Invoices::forCustomer((int) ($_GET['customer'] ?? 1)), "\n";
        break;
    default:
        http_response_code(404);
        echo "not found\n";
}
