// The Java program of the end-to-end crash tests: logs, then dereferences null in a nested
// call. Run by a Java runtime that e2e/tools/install.sh links with jlink from the machine's
// JDK (java.base only) into the image vigil.test/crashers:1.
public final class Crash {
    static final class Customer {
        String address;
    }

    static Customer lookup(int id) {
        return id == 42 ? new Customer() : null;
    }

    static int label(int id) {
        return lookup(id + 1).address.length();
    }

    public static void main(String[] args) throws InterruptedException {
        System.out.println("billing: starting");
        System.out.println("billing: printing the label of order 42");
        Thread.sleep(2000);
        System.out.println(label(42));
    }
}
